"""ProgressSender: progress leaves the job's thread, newest value wins, a phase goes out once it
has held for the settle time, and nothing is sent after close()."""

from __future__ import annotations

import threading

from comfyfarm.tasks.models import JobProgress
from comfyfarm.worker.progress_sender import ProgressSender, SendSchedule

JOB = "00000000-0000-4000-8000-000000000001"


def progress(phase: str, value: int = 0) -> JobProgress:
    return JobProgress(job_id=JOB, phase=phase, value=value, max=20, percent=value * 5.0)


class Recorder:
    """A ``send`` that records values and can be held shut to simulate a slow Redis."""

    def __init__(self) -> None:
        self.sent: list[JobProgress] = []
        self.gate = threading.Event()
        self.gate.set()
        self.arrived = threading.Semaphore(0)

    def __call__(self, value: JobProgress) -> None:
        self.arrived.release()
        self.gate.wait(10)
        self.sent.append(value)

    def wait_for_sends(self, count: int) -> None:
        for _ in range(count):
            assert self.arrived.acquire(timeout=10), "a send did not start"


def test_offer_returns_while_the_send_is_stuck() -> None:
    """A send blocked on Redis does not block the job thread offering new values."""
    recorder = Recorder()
    recorder.gate.clear()
    sender = ProgressSender(recorder, min_interval=60, settle=0)
    sender.offer(progress("running", 1))
    recorder.wait_for_sends(1)
    sender.offer(progress("running", 2))  # returns although the first send is stuck
    recorder.gate.set()
    sender.close()
    assert [p.value for p in recorder.sent] == [1]


def test_values_offered_during_a_send_collapse_to_the_newest() -> None:
    """While one value is being sent, later ones replace each other; the newest goes next."""
    recorder = Recorder()
    recorder.gate.clear()
    sender = ProgressSender(recorder, min_interval=0.01)
    sender.offer(progress("running", 1))
    recorder.wait_for_sends(1)
    for value in (2, 3, 4):
        sender.offer(progress("running", value))
    recorder.gate.set()
    recorder.wait_for_sends(1)
    sender.close()
    assert [p.value for p in recorder.sent] == [1, 4]


def test_a_settled_phase_change_is_sent_and_same_phase_waits_for_the_interval() -> None:
    """Within a minute-long interval a new phase still goes out; more of the same phase not."""
    recorder = Recorder()
    sender = ProgressSender(recorder, min_interval=60, settle=0)
    sender.offer(progress("running", 1))
    recorder.wait_for_sends(1)
    sender.offer(progress("running", 2))  # same phase: held for the interval
    sender.offer(progress("collecting"))  # new phase: replaces it and is due once settled
    recorder.wait_for_sends(1)
    sender.offer(progress("collecting", 3))
    sender.close()  # drops the held value
    assert [(p.phase, p.value) for p in recorder.sent] == [("running", 1), ("collecting", 0)]


def test_phases_shorter_than_the_settle_time_cost_no_update() -> None:
    """A job whose phases all end within ``settle`` (and the first interval) sends nothing: its
    final state, written after close(), says the rest."""
    recorder = Recorder()
    sender = ProgressSender(recorder, min_interval=60, settle=60)
    sender.offer(progress("submitted"))
    sender.offer(progress("running", 1))
    sender.offer(progress("collecting"))
    sender.close()
    assert recorder.sent == []


def schedule(min_interval: float = 5, settle: float = 1) -> SendSchedule:
    return SendSchedule(min_interval=min_interval, settle=settle, start=0.0)


def test_a_phase_is_due_once_it_has_held_for_the_settle_time() -> None:
    """A "submitted" replaced by "running" at once is never due; "running" is, 1 s after it
    began (later values of it do not push that back)."""
    times = schedule()
    times.offered("submitted", 0.0)
    assert times.due() == 1.0
    times.offered("running", 0.1)
    times.offered("running", 0.9)
    assert times.due() == 1.1


def test_same_phase_values_wait_for_the_interval() -> None:
    times = schedule()
    times.offered("running", 0.1)
    times.sent("running", 1.1)
    times.offered("running", 2.0)
    assert times.due() == 6.1


def test_a_periodic_update_due_before_a_phase_settled_carries_it() -> None:
    """The interval is never held back by the settle time: an update falling due while a new
    phase settles carries the newest value, whatever its phase."""
    times = schedule()
    times.offered("running", 0.0)
    times.sent("running", 1.0)
    times.offered("collecting", 5.5)  # settles at 6.5; the periodic update is due at 6.0
    assert times.due() == 6.0


def test_a_phase_after_an_overdue_interval_still_settles_first() -> None:
    """A periodic update that fell due while nothing was offered (the prompt waited in ComfyUI's
    queue) does not send the next phase at once: "submitted" just before "running" is not."""
    times = schedule()
    times.offered("uploading", 0.0)
    times.sent("uploading", 1.0)
    times.offered("submitted", 20.0)
    assert times.due() == 21.0
    times.offered("running", 20.1)
    assert times.due() == 21.1


def test_the_first_value_is_due_by_the_first_interval_at_the_latest() -> None:
    """The periodic clock starts with the job."""
    times = schedule()
    times.offered("uploading", 4.5)
    assert times.due() == 5.0


def test_settle_is_at_most_the_interval() -> None:
    """With progress every 0.5 s a new phase is not held for a minute."""
    times = schedule(min_interval=0.5, settle=60)
    times.offered("running", 0.0)
    times.sent("running", 0.5)
    times.offered("collecting", 10.0)
    assert times.due() == 10.5


def test_a_phase_is_sent_once_settled_without_another_offer() -> None:
    """The sender's thread wakes by itself when the settle time is over."""
    recorder = Recorder()
    sender = ProgressSender(recorder, min_interval=60, settle=0.05)
    sender.offer(progress("running", 1))
    recorder.wait_for_sends(1)
    sender.close()
    assert [(p.phase, p.value) for p in recorder.sent] == [("running", 1)]


def test_a_held_value_is_sent_when_its_interval_has_passed() -> None:
    """The newest value goes out after the interval even if nothing else is offered."""
    recorder = Recorder()
    sender = ProgressSender(recorder, min_interval=0.05)
    sender.offer(progress("running", 1))
    recorder.wait_for_sends(1)
    sender.offer(progress("running", 2))
    recorder.wait_for_sends(1)
    sender.close()
    assert [p.value for p in recorder.sent] == [1, 2]


def test_close_waits_for_the_send_in_progress_and_stops_everything() -> None:
    """close() returns only after a running send finished; later offers are ignored."""
    recorder = Recorder()
    recorder.gate.clear()
    sender = ProgressSender(recorder, min_interval=0)
    sender.offer(progress("running", 1))
    recorder.wait_for_sends(1)
    closer = threading.Thread(target=sender.close)
    closer.start()
    closer.join(0.2)
    assert closer.is_alive()  # still waiting for the stuck send
    recorder.gate.set()
    closer.join(10)
    assert not closer.is_alive()
    sender.offer(progress("collecting"))
    assert [p.value for p in recorder.sent] == [1]
    assert not any(t.name == "progress-sender" and t.is_alive() for t in threading.enumerate())


def test_a_failing_send_is_logged_and_the_next_value_still_goes_out() -> None:
    """A Redis error while sending progress loses that update only."""
    sent: list[str] = []
    done = threading.Event()

    def flaky(value: JobProgress) -> None:
        if value.phase == "running":
            raise ConnectionError("redis down")
        sent.append(value.phase)
        done.set()

    sender = ProgressSender(flaky, min_interval=0)
    sender.offer(progress("running"))
    sender.offer(progress("collecting"))
    assert done.wait(10)
    sender.close()
    assert sent == ["collecting"]


def test_close_without_any_offer_is_harmless() -> None:
    """A job that reported nothing closes its sender without starting a thread."""
    ProgressSender(lambda value: None).close()
