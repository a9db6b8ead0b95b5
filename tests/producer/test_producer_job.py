"""Following a job: status, progress, wait, result, cancel — with the states a worker would write
(through Celery's real Redis result backend), but no worker."""

from __future__ import annotations

import json
import time

import pytest
import redis
from producer_helpers import PROMPT, body_of, progress, result, write_state

from comfyfarm.producer import Farm, JobTimeout, waiting
from comfyfarm.tasks.keys import cancel_requested
from comfyfarm.tasks.keyspace import job_result_key
from comfyfarm.tasks.models import PROGRESS_STATE, JobProgress


def test_wait_streams_progress_and_returns_the_result(farm: Farm) -> None:
    """wait() reports each new progress and returns the JobResult the task returned."""
    job = farm.submit(PROMPT, params={"seed": 1})
    write_state(farm, job, PROGRESS_STATE, progress(job, 10).to_dict())
    seen: list[JobProgress] = []

    def on_progress(update: JobProgress) -> None:
        seen.append(update)
        if len(seen) == 1:  # the worker moves on while we wait
            write_state(farm, job, PROGRESS_STATE, progress(job, 60).to_dict())
        else:
            write_state(farm, job, "SUCCESS", result(job).to_dict())

    started = time.monotonic()
    final = job.wait(10, on_progress=on_progress)
    assert time.monotonic() - started < 2  # pushed, not polled
    assert [update.percent for update in seen] == [10, 60]
    assert final == result(job)
    assert job.status() == "succeeded" and job.result() == final


def test_wait_times_out_cleanly(farm: Farm) -> None:
    """A job nobody runs makes wait() raise JobTimeout (a TimeoutError) naming the job."""
    job = farm.submit(PROMPT)
    started = time.monotonic()
    with pytest.raises(TimeoutError) as caught:
        job.wait(0.3)
    assert isinstance(caught.value, JobTimeout)
    assert 0.3 <= time.monotonic() - started < 2
    assert caught.value.job_id == job.job_id and job.job_id in str(caught.value)
    assert caught.value.status == "queued"


def test_wait_falls_back_to_polling(farm: Farm, monkeypatch: pytest.MonkeyPatch) -> None:
    """A state change whose message was missed is still seen by the periodic re-read."""
    monkeypatch.setattr(waiting, "POLL_SECONDS", 0.1)
    job = farm.submit(PROMPT)
    write_state(farm, job, PROGRESS_STATE, progress(job, 5).to_dict())
    key = farm.app.backend.get_key_for_task(job.job_id)

    def sneak_in_result(update: JobProgress) -> None:  # SET without PUBLISH
        meta = {"status": "SUCCESS", "result": result(job).to_dict(), "task_id": job.job_id}
        farm.redis.set(key.decode(), json.dumps(meta))

    assert job.wait(5, on_progress=sneak_in_result).status == "succeeded"


def test_failed_job_returns_the_stored_result(farm: Farm) -> None:
    """A FAILURE state plus the worker's stored JobResult gives that failed JobResult."""
    job = farm.submit(PROMPT)
    error = {"type": "ExecutionFailed", "message": "boom", "node_id": "3", "node_type": "KSampler"}
    failed = result(job, "failed", error)
    farm.redis.set(job_result_key(farm.settings.key_prefix, job.job_id),
                   json.dumps(failed.to_dict()))  # fmt: skip
    farm.app.backend.mark_as_failure(job.job_id, RuntimeError("ExecutionFailed: boom"))
    assert job.wait(5) == failed
    assert job.status() == "failed"


def test_failure_without_a_result_is_explained(farm: Farm) -> None:
    """A worker crash that stored no JobResult still yields a failed JobResult with the error."""
    job = farm.submit(PROMPT, params={"seed": 42}, labels={"batch": "b"})
    farm.app.backend.mark_as_failure(job.job_id, KeyError("payload"))
    final = job.wait(5)
    assert final.status == "failed" and final.error is not None
    assert final.error["type"] == "KeyError" and "payload" in final.error["message"]
    assert final.params == {"seed": 42} and final.labels == {"batch": "b"}


def test_cancelled_result_stored_as_revoked_meta(farm: Farm) -> None:
    """A JobResult stored as the REVOKED state's meta is returned as is."""
    job = farm.submit(PROMPT)
    cancelled = result(job, "cancelled", {"type": "Cancelled", "message": "by user"})
    write_state(farm, job, "REVOKED", cancelled.to_dict())
    assert job.wait(5) == cancelled
    assert job.status() == "cancelled"


def test_status_words(farm: Farm) -> None:
    """Celery states map to the farm's words; the cancel flag shows as cancelling."""
    job = farm.submit(PROMPT)
    assert job.status() == "queued" and job.progress() is None and job.result() is None
    assert farm.job("8f14e45f-ceea-467a-9575-8a2b1c3d4e5f").status() == "unknown"
    write_state(farm, job, "STARTED", {"pid": 1, "hostname": "gpu0@box"})
    assert job.status() == "running"
    write_state(farm, job, PROGRESS_STATE, progress(job, 30).to_dict())
    assert job.progress() == progress(job, 30)
    assert job.result() is None
    write_state(farm, job, "RETRY", {"exc_type": "ComfyUnavailable", "exc_message": ["down"]})
    assert job.status() == "retrying"
    cancelled = result(job, "cancelled", {"type": "Cancelled", "message": "x"})
    write_state(farm, job, "SUCCESS", cancelled.to_dict())
    assert job.status() == "cancelled"


def test_cancel_a_queued_job(farm: Farm) -> None:
    """Cancel sets the flag, broadcasts a revoke (no terminate) and marks the queued job
    cancelled, so a waiter returns at once."""
    job = farm.submit(PROMPT)
    control = farm.redis.pubsub()
    control.psubscribe(f"{farm.settings.key_prefix}*pidbox*")
    assert control.get_message(timeout=2)["type"] == "psubscribe"
    outcome = job.cancel(reason="wrong seed")
    assert (outcome.status_before, outcome.flag_set, outcome.revoke_sent, outcome.marked_revoked) \
        == ("queued", True, True, True)  # fmt: skip
    assert cancel_requested(farm.redis, farm.settings.key_prefix, job.job_id)
    message = control.get_message(timeout=5)
    while message is not None and message["type"] != "pmessage":
        message = control.get_message(timeout=5)
    assert message is not None
    command = body_of(json.loads(message["data"]))
    control.close()
    assert command["method"] == "revoke"
    assert command["arguments"]["task_id"] == job.job_id
    assert not command["arguments"].get("terminate")
    final = job.wait(2)
    assert final.status == "cancelled" and final.error is not None
    assert job.cancel().status_before == "cancelled"  # nothing more to do
    assert "nothing to cancel" in str(job.cancel())


def test_cancel_a_running_job_only_flags_it(farm: Farm) -> None:
    """A running job is flagged and revoked but not marked: the worker records the outcome."""
    job = farm.submit(PROMPT)
    write_state(farm, job, "STARTED", {"pid": 1, "hostname": "gpu0@box"})
    outcome = job.cancel()
    assert (outcome.flag_set, outcome.marked_revoked) == (True, False)
    assert job.status() == "cancelling"


def test_finished_jobs_are_not_cancelled(farm: Farm, rds: redis.Redis) -> None:
    """Cancelling a succeeded job does nothing."""
    job = farm.submit(PROMPT)
    write_state(farm, job, "SUCCESS", result(job).to_dict())
    outcome = job.cancel()
    assert not (outcome.flag_set or outcome.revoke_sent or outcome.marked_revoked)
    assert not cancel_requested(rds, farm.settings.key_prefix, job.job_id)


def test_job_handle_by_id(farm: Farm) -> None:
    """farm.job() accepts canonical ids only."""
    from comfyfarm.tasks.errors import JobSpecError

    job = farm.submit(PROMPT)
    assert farm.job(job.job_id) == job
    with pytest.raises(JobSpecError):
        farm.job("not-an-id")
