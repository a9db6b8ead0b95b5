"""ProgressSender: progress leaves the job's thread, newest value wins, a phase goes out once it
has held for the settle time, and nothing is sent after close()."""

from __future__ import annotations

import threading

from comfyfarm.tasks.models import JobProgress
from comfyfarm.worker.progress_sender import ProgressSender

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


def test_only_the_phase_that_held_for_the_settle_time_is_sent() -> None:
    """A "submitted" replaced by "running" at once is never sent; "running", which holds, goes
    out once it has held for ``settle``, with its newest value."""
    recorder = Recorder()
    sender = ProgressSender(recorder, min_interval=60, settle=0.5)
    sender.offer(progress("submitted"))
    sender.offer(progress("running", 1))
    sender.offer(progress("running", 2))  # same phase: the settle time still counts from 1
    recorder.wait_for_sends(1)
    sender.close()
    assert [(p.phase, p.value) for p in recorder.sent] == [("running", 2)]


def test_a_phase_change_goes_out_with_a_due_periodic_update_before_it_settled() -> None:
    """The periodic interval is never held back by ``settle``: each due update carries the
    newest value, whatever its phase."""
    recorder = Recorder()
    sender = ProgressSender(recorder, min_interval=0.05, settle=60)
    sender.offer(progress("submitted"))
    recorder.wait_for_sends(1)
    sender.offer(progress("running", 1))
    recorder.wait_for_sends(1)
    sender.close()
    assert [p.phase for p in recorder.sent] == ["submitted", "running"]


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
