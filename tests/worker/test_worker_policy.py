"""The job policy (``worker.policy``) and the job-error tree (``worker.job_errors``): which
errors are retried, when a job is given up, and what is recorded for every outcome."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
import redis
import redis.exceptions

from comfyfarm.comfy.client import ComfyClient
from comfyfarm.comfy.errors import (
    ComfyServerError,
    ComfyUnavailable,
    ExecutionFailed,
    PromptLost,
    PromptRejected,
    PromptTimeout,
)
from comfyfarm.storage import MemoryStore
from comfyfarm.storage.base import ObjectNotFound, StorageError, StorageUnavailable, UnsafeKey
from comfyfarm.tasks.connect import redis_client
from comfyfarm.tasks.errors import JobSpecError
from comfyfarm.tasks.keys import job_result_key, lease_key, list_dead_letters
from comfyfarm.tasks.models import JobResult, JobSpec, new_job_id
from comfyfarm.tasks.settings import Settings
from comfyfarm.worker.inputs import InputFileError, InputUnavailable
from comfyfarm.worker.job_errors import JobTimeout, Permanent, Retryable, classify
from comfyfarm.worker.policy import (
    MAX_LETTER_PAYLOAD,
    MAX_UNSUBMITTED_RETRIES,
    Admission,
    FarmPolicy,
    GiveUp,
    Retry,
    decide,
    fail,
    retry_countdown,
    run_once,
)
from comfyfarm.worker.runner import JobContext, MissingRequiredOutputs

PROMPT = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8}}}
UNAVAILABLE = ComfyUnavailable(url="http://gpu-1", reason="connection refused")
NODE_ERROR = ExecutionFailed(prompt_id="p", node_id="3", node_type="KSampler",
                             exception_type="RuntimeError", exception_message="OOM",
                             traceback=[])  # fmt: skip


def spec(**fields: object) -> JobSpec:
    return JobSpec(job_id=new_job_id(), prompt=PROMPT, **fields)


@pytest.fixture
def store() -> Iterator[MemoryStore]:
    memory = MemoryStore(f"policy-{uuid.uuid4().hex}")
    yield memory
    memory.clear()


@pytest.fixture
def ctx(store: MemoryStore) -> JobContext:
    return JobContext(client=ComfyClient("http://127.0.0.1:9"), store=store, client_id="c1")


def test_the_policy_and_the_runner_load_no_celery() -> None:
    """The job sequence, the policy, the error tree and the task's deps import no Celery (direct
    mode runs without it); only the task shell does."""
    code = (
        "import sys, comfyfarm.worker.policy, comfyfarm.worker.deps, comfyfarm.worker.job_errors; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('celery', 'kombu')))"
    )
    done = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# -- the tree -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [UNAVAILABLE, ComfyServerError(url="u", status=502, body=""), PromptLost(prompt_id="p"),
     StorageUnavailable(key="k", reason="EIO"),
     InputUnavailable(node_id="1", input_name="image", source="http://x", reason="HTTP 503")],
    ids=lambda e: type(e).__name__,
)  # fmt: skip
def test_errors_about_where_or_when_a_job_ran_are_retryable(error: Exception) -> None:
    """ComfyUI unreachable/5xx/lost, storage or input source unavailable: Retryable."""
    job_error = classify(error)
    assert isinstance(job_error, Retryable) and not isinstance(job_error, Permanent)
    assert job_error.cause is error


@pytest.mark.parametrize(
    "error",
    [NODE_ERROR, PromptTimeout(prompt_id="p", kind="stall", seconds=1.0),
     PromptRejected(error_type="x", message="m", details="", node_errors=[], partial=False),
     MissingRequiredOutputs(prompt_id="p", missing=["9"]),
     StorageError(key="k", reason="EACCES"), UnsafeKey(key="../k", reason="escapes"),
     ObjectNotFound(key="k", reason="gone"),
     InputFileError(node_id="1", input_name="image", source="/nope", reason="not found")],
    ids=lambda e: type(e).__name__,
)  # fmt: skip
def test_errors_about_the_job_itself_are_permanent(error: Exception) -> None:
    """Rejected, node errors, timeouts, refused storage or inputs: Permanent."""
    job_error = classify(error)
    assert isinstance(job_error, Permanent) and not isinstance(job_error, Retryable)


def test_an_error_that_is_no_job_outcome_is_not_classified() -> None:
    """A bug (KeyError, a contract violation) is left to propagate: classify gives None."""
    assert classify(KeyError("x")) is None
    assert classify(JobSpecError(field="prompt", reason="bad")) is None


def test_a_job_error_shows_its_cause_as_the_result_error() -> None:
    """A classified error's to_dict() is its cause's, fields included; one of our own shows
    its type and message."""
    job_error = classify(NODE_ERROR)
    assert job_error is not None and job_error.to_dict() == NODE_ERROR.to_dict()
    timeout = JobTimeout(limit=(90, 60))
    assert classify(timeout) is timeout
    assert timeout.to_dict() == {
        "type": "JobTimeout",
        "message": "the job ran past its time limit ((90, 60))",
    }


# -- retry or give up -----------------------------------------------------------------------


def test_retries_back_off_2_4_8_seconds_capped_at_a_minute() -> None:
    """Countdown before each retry doubles from 2 s and never exceeds 60 s."""
    assert [retry_countdown(n) for n in range(7)] == [2, 4, 8, 16, 32, 60, 60]


def test_a_permanent_error_is_given_up_at_once_without_a_dead_letter() -> None:
    """Permanent: no retry whatever the counts, and no dead letter."""
    step = decide(Permanent(cause=NODE_ERROR), spec(max_retries=5), retries=0, submitted=1)
    assert isinstance(step, GiveUp) and step.letter_reason is None


def test_a_retryable_error_is_retried_while_tries_remain() -> None:
    """Retryable with tries left: Retry with the backoff and the delivery bound."""
    error = Retryable(cause=UNAVAILABLE)
    step = decide(error, spec(max_retries=2), retries=2, submitted=2)
    assert step == Retry(error, 8.0, 2 + MAX_UNSUBMITTED_RETRIES)


def test_a_retryable_error_after_the_last_try_is_dead_lettered() -> None:
    """Retryable once max_retries + 1 tries reached a ComfyUI: give up, dead letter."""
    step = decide(Retryable(cause=UNAVAILABLE), spec(max_retries=2), retries=2, submitted=3)
    assert step == GiveUp(step.error, "retries exhausted (2)")


def test_tries_that_never_reached_a_comfyui_are_bounded_separately() -> None:
    """Deliveries that never POSTed do not use max_retries, but max_retries + 20 bounds them."""
    error = Retryable(cause=UNAVAILABLE)
    job = spec(max_retries=1)
    assert isinstance(decide(error, job, retries=20, submitted=0), Retry)
    step = decide(error, job, retries=21, submitted=0)
    assert step == GiveUp(error, "gave up after 22 deliveries, 0 reached a ComfyUI")


# -- what is recorded -----------------------------------------------------------------------


def test_a_failure_writes_result_json_beside_the_outputs(ctx: JobContext) -> None:
    """fail(): the failed result, with the error's fields, also lands in result.json."""
    job = spec()
    result = fail(job, ctx, Permanent(cause=NODE_ERROR))
    assert result.status == "failed" and result.error == NODE_ERROR.to_dict()
    written = json.loads(ctx.store.read_bytes(f"{job.job_id}/result.json"))
    assert JobResult.from_dict(written) == result


def test_a_failure_whose_store_is_down_still_has_a_result(ctx: JobContext) -> None:
    """A store that refuses result.json (often the failure itself) does not hide the result."""

    class Broken(MemoryStore):
        def write(self, key, chunks, *, content_type=None):
            raise StorageUnavailable(key=key, reason="ENOSPC")

    ctx.store = Broken("broken")
    result = fail(spec(), ctx, Retryable(cause=StorageUnavailable(key="k", reason="ENOSPC")))
    assert result.status == "failed" and (result.error or {})["type"] == "StorageUnavailable"


def test_direct_mode_turns_every_job_error_into_a_recorded_failure(
    ctx: JobContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run_once: retryable or permanent, one try, a failed result and result.json; a bug
    propagates."""
    import comfyfarm.worker.policy as policy

    for error in (UNAVAILABLE, NODE_ERROR):
        job = spec()

        def run_job(spec: JobSpec, ctx: JobContext, error: Exception = error) -> JobResult:
            raise error

        monkeypatch.setattr(policy, "run_job", run_job)
        result = run_once(job, ctx)
        assert result.status == "failed" and (result.error or {})["type"] == type(error).__name__
        assert ctx.store.exists(f"{job.job_id}/result.json")

    def buggy(spec: JobSpec, ctx: JobContext) -> JobResult:
        raise KeyError("bug")

    monkeypatch.setattr(policy, "run_job", buggy)
    with pytest.raises(KeyError):
        run_once(spec(), ctx)


# -- the farm's records (real Valkey) -------------------------------------------------------


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(broker_url=redis_url, key_prefix=f"t-{uuid.uuid4().hex[:10]}:")


@pytest.fixture
def rds(settings: Settings) -> Iterator[redis.Redis]:
    client = redis_client(settings)
    yield client
    client.close()


@pytest.fixture
def farm_policy(rds: redis.Redis, settings: Settings) -> FarmPolicy:
    return FarmPolicy(rds, settings, worker_name="w1")


def test_a_free_job_is_admitted_with_its_lease_held(farm_policy: FarmPolicy) -> None:
    """The first copy of a job takes its lease and runs it."""
    job = spec()
    admission, lease = farm_policy.admit(job, watch=False)
    assert admission is Admission.RUN and lease.holder() == lease.owner
    assert lease.key == lease_key(farm_policy.settings.key_prefix, job.job_id)


def test_a_watch_of_a_finished_job_is_not_admitted(
    farm_policy: FarmPolicy, rds: redis.Redis
) -> None:
    """A watch copy that finds the job's result ends; it takes no lease."""
    job = spec()
    rds.set(job_result_key(farm_policy.settings.key_prefix, job.job_id), b"{}")
    admission, lease = farm_policy.admit(job, watch=True)
    assert admission is Admission.FINISHED and lease.holder() is None


def test_conclude_stores_the_result_and_dead_letters_on_request(
    farm_policy: FarmPolicy, rds: redis.Redis, ctx: JobContext
) -> None:
    """conclude(): the result under the job's result key; a letter reason adds a dead letter
    with the error, attempts and spec."""
    job = spec()
    result = fail(job, ctx, Retryable(cause=UNAVAILABLE))
    farm_policy.conclude(job, result, letter_reason="retries exhausted (3)")
    stored = rds.get(job_result_key(farm_policy.settings.key_prefix, job.job_id))
    assert stored is not None and JobResult.from_dict(json.loads(stored)) == result
    [letter] = list_dead_letters(rds, farm_policy.settings.key_prefix)
    assert letter.reason == "retries exhausted (3)" and letter.error == UNAVAILABLE.to_dict()
    assert letter.spec == job.to_dict() and letter.attempts == 1


def test_an_oversized_unreadable_payload_is_dead_lettered_without_its_body(
    farm_policy: FarmPolicy, rds: redis.Redis
) -> None:
    """An unreadable payload over MAX_LETTER_PAYLOAD is recorded, its body left out."""
    big = {"prompt": "x" * (MAX_LETTER_PAYLOAD + 1)}
    error = JobSpecError(field="prompt", reason="must be an object")
    farm_policy.reject_payload(big, error, task_id="t1", attempts=1)
    [letter] = list_dead_letters(rds, farm_policy.settings.key_prefix)
    assert letter.job_id == "t1" and letter.spec is None and letter.error == error.to_dict()


def test_tries_that_fail_on_the_store_use_up_retries(farm_policy: FarmPolicy) -> None:
    """A job whose prompt was POSTed once and whose every collect fails on a full disk is given
    up after max_retries + 1 tries, not after the unsubmitted-tries bound."""
    job = spec(max_retries=2)
    farm_policy.ledger.record(job.job_id, "http://gpu-1")  # one POST; later tries only collect
    full = classify(StorageUnavailable(key="k", reason="No space left on device (ENOSPC)"))
    assert full is not None

    steps = [farm_policy.after_error(job, full, retries=n) for n in range(3)]

    assert [type(step).__name__ for step in steps[:2]] == ["Retry", "Retry"]
    assert isinstance(steps[2], GiveUp) and steps[2].letter_reason == "retries exhausted (2)"


@pytest.mark.parametrize(
    "exc",
    [redis.exceptions.ConnectionError("failover"), redis.exceptions.TimeoutError("slow"),
     redis.exceptions.ReadOnlyError("READONLY replica")],
)  # fmt: skip
def test_the_farms_redis_failing_over_is_retryable(exc: BaseException) -> None:
    """Redis unreachable or read-only (a Sentinel failover) is a retry, not a failed job."""
    assert isinstance(classify(exc), Retryable)
