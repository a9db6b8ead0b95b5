"""Following many jobs at once (``Farm.as_completed``): one subscription, results in finishing
order, progress, missed messages, timeouts — with states a worker would write, but no worker."""

from __future__ import annotations

import json
import threading
import time

import pytest
from producer_helpers import PROMPT, progress, result, write_state

from comfyfarm.producer import Farm, WaitTimeout, waiting
from comfyfarm.tasks.models import PROGRESS_STATE, JobProgress
from comfyfarm.tasks.settings import Settings


def test_results_come_in_finishing_order(farm: Farm) -> None:
    """Jobs finishing in the reverse of their submission order are yielded as they finish."""
    jobs = farm.submit_many([PROMPT] * 3)
    finish_order = list(reversed(jobs))
    write_state(farm, finish_order[0], "SUCCESS", result(finish_order[0]).to_dict())
    seen: list[str] = []
    for final in farm.as_completed(jobs, timeout=10):
        seen.append(final.job_id)
        if len(seen) < len(jobs):
            following = finish_order[len(seen)]
            write_state(farm, following, "SUCCESS", result(following).to_dict())
    assert seen == [job.job_id for job in finish_order]


def test_already_finished_jobs_are_yielded_at_once(farm: Farm) -> None:
    """A job that finished before anyone waited is found by the first read, not a message."""
    [job] = farm.submit_many([PROMPT])
    write_state(farm, job, "SUCCESS", result(job).to_dict())
    assert [final.job_id for final in farm.as_completed([job.job_id], timeout=5)] == [job.job_id]


def test_failed_and_cancelled_jobs_also_finish(farm: Farm) -> None:
    """Failure and revocation end a job like success does, each with its JobResult."""
    failed, cancelled = farm.submit_many([PROMPT] * 2)
    farm.app.backend.mark_as_failure(failed.job_id, RuntimeError("boom"))
    cancelled.cancel()
    statuses = {final.job_id: final.status for final in farm.as_completed([failed, cancelled], 5)}
    assert statuses == {failed.job_id: "failed", cancelled.job_id: "cancelled"}


def test_progress_is_reported_per_job(farm: Farm) -> None:
    """Each new progress of any followed job reaches the listener with the job's id."""
    first, second = farm.submit_many([PROMPT] * 2)
    seen: list[tuple[str, float]] = []
    next_steps = iter(
        [(second, PROGRESS_STATE, progress(second, 50).to_dict()),
         (first, "SUCCESS", result(first).to_dict())]
    )  # fmt: skip

    def on_progress(job_id: str, update: JobProgress) -> None:
        seen.append((job_id, update.percent))
        job, state, meta = next(next_steps)  # the workers move on
        write_state(farm, job, state, meta)

    write_state(farm, first, PROGRESS_STATE, progress(first, 10).to_dict())
    finals = []
    for final in farm.as_completed([first, second], 10, on_progress=on_progress):
        finals.append(final.job_id)
        write_state(farm, second, "SUCCESS", result(second).to_dict())
    assert seen == [(first.job_id, 10), (second.job_id, 50)]
    assert finals == [first.job_id, second.job_id]


def test_a_missed_message_is_caught_by_the_periodic_read(
    farm: Farm, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A result stored without its PUBLISH is still found by the re-read of pending states."""
    monkeypatch.setattr(waiting, "POLL_SECONDS", 0.1)
    [job] = farm.submit_many([PROMPT])
    write_state(farm, job, PROGRESS_STATE, progress(job, 5).to_dict())
    key = farm.app.backend.get_key_for_task(job.job_id).decode()

    def sneak_in_result(job_id: str, update: JobProgress) -> None:  # SET without PUBLISH
        meta = {"status": "SUCCESS", "result": result(job).to_dict(), "task_id": job.job_id}
        farm.redis.set(key, json.dumps(meta))

    finals = list(farm.as_completed([job], 5, on_progress=sneak_in_result))
    assert [final.status for final in finals] == ["succeeded"]


def test_timeout_names_the_pending_jobs_after_yielding_the_finished(farm: Farm) -> None:
    """When time runs out, finished jobs were yielded and WaitTimeout lists the rest."""
    done, stuck = farm.submit_many([PROMPT] * 2)
    write_state(farm, done, "SUCCESS", result(done).to_dict())
    seen: list[str] = []
    with pytest.raises(TimeoutError) as caught:
        for final in farm.as_completed([done, stuck], timeout=0.3):
            seen.append(final.job_id)
    assert seen == [done.job_id]
    assert isinstance(caught.value, WaitTimeout)
    assert caught.value.pending == [stuck.job_id] and stuck.job_id in str(caught.value)


def test_many_jobs_share_one_subscription(settings: Settings) -> None:
    """A thousand jobs are followed over one connection, from one thread, each yielded once."""
    with Farm(settings) as farm:
        jobs = farm.submit_many([PROMPT] * 1000)
        write_state(farm, jobs[0], "SUCCESS", result(jobs[0]).to_dict())
        finals = farm.as_completed(jobs, timeout=60)
        ids = [next(finals).job_id]  # subscribed and reading by now
        # Other tests' processes may share this Redis: look for connections holding our channels.
        holders = [
            client
            for client in farm.redis.client_list(_type="pubsub")
            if int(client.get("sub", 0)) >= len(jobs)
        ]
        finisher = threading.Thread(
            target=lambda: [
                write_state(farm, job, "SUCCESS", result(job).to_dict()) for job in jobs[1:]
            ]
        )
        finisher.start()
        ids.extend(final.job_id for final in finals)
        finisher.join()
    assert sorted(ids) == sorted(job.job_id for job in jobs)
    assert len(holders) == 1  # one connection subscribed to all thousand channels


def test_unknown_job_ids_are_refused_before_waiting(farm: Farm) -> None:
    """A malformed id is a JobSpecError at the call, not a wait that never ends."""
    with pytest.raises(ValueError, match="job_id"):
        farm.as_completed(["not-a-uuid"], timeout=1)


def test_no_timeout_once_every_job_has_finished(farm: Farm) -> None:
    """A caller that holds the last result past the deadline gets the end of the results, not
    a timeout: nothing is pending any more."""
    [job] = farm.submit_many([PROMPT])
    write_state(farm, job, PROGRESS_STATE, progress(job, 5).to_dict())

    def finish(job_id: str, update: JobProgress) -> None:  # subscribed by now: a message
        write_state(farm, job, "SUCCESS", result(job).to_dict())

    finals = farm.as_completed([job], timeout=1.0, on_progress=finish)
    first = next(finals)
    time.sleep(1.1)  # the deadline passes while the caller holds the last result
    assert first.job_id == job.job_id and list(finals) == []


def test_a_pending_job_costs_one_read_per_five_seconds(farm: Farm) -> None:
    """The re-read is a net for missed messages, not the way results arrive: following a job
    that does not finish costs the first read, then one MGET per POLL_SECONDS (5 s)."""
    [job] = farm.submit_many([PROMPT])
    before = _mget_calls(farm)

    with pytest.raises(WaitTimeout):
        list(farm.as_completed([job], timeout=4.5))

    assert _mget_calls(farm) - before == 1


def _mget_calls(farm: Farm) -> int:
    """MGETs the server has run (absent from its statistics before the first)."""
    stats = farm.redis.info("commandstats")
    return int(stats.get("cmdstat_mget", {}).get("calls", 0))
