"""The Celery task shell (``worker.task``) on its own: each way a job can end becomes the right
Celery outcome (return, ``retry`` onto the shared queue, ``JobFailed``, ``Ignore``) with the
result, ``result.json`` and dead letter the policy asks for.

The task is registered on the real app (``tasks.app.make_app``) over the suite's real Valkey and
run as a worker runs it (a request with an id and a retry count), with ``WorkerDeps`` giving it
a runner that ends the way each test needs; ``task.retry`` really publishes the retried message.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from celery import Celery, Task
from celery.canvas import Signature
from celery.exceptions import Ignore, Reject, Retry, SoftTimeLimitExceeded
from kombu.exceptions import OperationalError

from comfyfarm.comfy.client import ComfyClient
from comfyfarm.comfy.errors import ComfyServerError, ComfyUnavailable, ExecutionFailed
from comfyfarm.storage import MemoryStore
from comfyfarm.storage.base import StorageError, StorageUnavailable
from comfyfarm.tasks.app import make_app
from comfyfarm.tasks.connect import redis_client
from comfyfarm.tasks.keys import job_result_key, lease_key, list_dead_letters
from comfyfarm.tasks.models import JobResult, JobSpec, new_job_id
from comfyfarm.tasks.names import DELIVER_WEBHOOK, RUN_JOB
from comfyfarm.tasks.routing import SHARED_QUEUE
from comfyfarm.tasks.settings import Settings
from comfyfarm.worker import task as job_task
from comfyfarm.worker.copies import WATCH_HEADER
from comfyfarm.worker.deps import WorkerDeps
from comfyfarm.worker.inputs import InputFileError, InputUnavailable
from comfyfarm.worker.ledger import RedisLedger
from comfyfarm.worker.runner import JobContext, build_result, write_result

PROMPT = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8}}}
Runner = Callable[[JobSpec, JobContext], JobResult]


class RecordingClient(ComfyClient):
    """A ComfyUI client that only records which prompts it was asked to cancel."""

    def __init__(self, base_url: str) -> None:
        super().__init__(base_url)
        self.cancelled: list[str] = []

    def cancel(self, prompt_id: str) -> None:
        self.cancelled.append(prompt_id)


class Shell:
    """One registered task, its deps and what it wrote; ``run`` sets what the runner does."""

    def __init__(self, settings: Settings, rds: redis.Redis) -> None:
        self.settings, self.rds = settings, rds
        self.store = MemoryStore(f"task-{uuid.uuid4().hex}")
        self.client = RecordingClient("http://127.0.0.1:9")
        self.runner: Runner = succeed
        self.deps = WorkerDeps(
            settings,
            comfy_url=self.client.base_url,
            worker_name="w1",
            client_id="comfyfarm-w1",
            open_client=lambda url: self.client,
            open_output_store=lambda url: self.store,
            open_redis=redis_client,
            run=lambda spec, ctx: self.runner(spec, ctx),
        )
        self.app: Celery = make_app(settings)
        self.task: Task = job_task.register(self.app, self.deps)

    def deliver(self, payload: dict[str, Any], *, retries: int = 0, **request: Any) -> Any:
        """Run the task as a worker does: one request with this id and retry count."""
        fields = {
            "id": payload.get("job_id"), "args": [payload], "kwargs": {}, "retries": retries,
            "called_directly": False, "hostname": "w1@test",
            "delivery_info": {"routing_key": SHARED_QUEUE},
        }  # fmt: skip
        self.task.push_request(**{**fields, **request})
        try:
            return self.task.run(payload)
        finally:
            self.task.pop_request()

    def stored_result(self, job_id: str) -> dict[str, Any] | None:
        raw = self.rds.get(job_result_key(self.settings.key_prefix, job_id))
        return None if raw is None else dict(json.loads(raw))

    def result_file(self, job_id: str) -> dict[str, Any] | None:
        key = f"{job_id}/result.json"
        return dict(json.loads(self.store.read_bytes(key))) if self.store.exists(key) else None

    def queued(self, name: str) -> list[dict[str, Any]]:
        """The task messages named ``name`` waiting on the shared queue: their headers, and
        their arguments under ``"args"``."""
        found = []
        for key in self.rds.scan_iter(f"{self.settings.key_prefix}{SHARED_QUEUE}*"):
            if self.rds.type(key) not in ("list", b"list"):
                continue
            for raw in self.rds.lrange(key, 0, -1):
                message = json.loads(raw)
                if message["headers"]["task"] == name:
                    args = json.loads(base64.b64decode(message["body"]))[0]
                    found.append({**message["headers"], "args": args})
        return found


def succeed(spec: JobSpec, ctx: JobContext) -> JobResult:
    result = build_result(spec, ctx, status="succeeded", outputs=[])
    write_result(ctx.store, spec, result)
    return result


def raising(exc: BaseException) -> Runner:
    def run(spec: JobSpec, ctx: JobContext) -> JobResult:
        raise exc

    return run


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(broker_url=redis_url, key_prefix=f"t-{uuid.uuid4().hex[:10]}:", lease_seconds=3)


@pytest.fixture
def rds(settings: Settings) -> Iterator[redis.Redis]:
    client = redis_client(settings)
    yield client
    client.close()


@pytest.fixture
def shell(settings: Settings, rds: redis.Redis) -> Iterator[Shell]:
    made = Shell(settings, rds)
    yield made
    made.store.clear()
    made.app.close()


def job(**fields: Any) -> dict[str, Any]:
    return JobSpec(job_id=new_job_id(), prompt=PROMPT, **fields).to_dict()


def count_submissions(shell: Shell, job_id: str, times: int) -> None:
    ledger = RedisLedger(shell.rds, shell.settings.key_prefix, ttl=60)
    for _ in range(times):
        ledger.record(job_id, shell.client.base_url)


RETRYABLE = [
    ComfyUnavailable(url="http://gpu-1", reason="connection refused"),
    ComfyServerError(url="http://gpu-1/prompt", status=503, body="busy"),
    StorageUnavailable(key="a/b.png", reason="ENOSPC"),
    InputUnavailable(node_id="10", input_name="image", source="http://x/a.png", reason="HTTP 502"),
]
PERMANENT = [
    ExecutionFailed(
        prompt_id="p",
        node_id="3",
        node_type="KSampler",
        exception_type="RuntimeError",
        exception_message="CUDA out of memory",
        traceback=[],
    ),  # fmt: skip
    StorageError(key="a/b.png", reason="EACCES"),
    InputFileError(node_id="10", input_name="image", source="/no/such.png", reason="not found"),
]


def test_a_job_that_succeeds_returns_and_stores_its_result(shell: Shell) -> None:
    """Success: the task returns the result dict, stored under the job's result key too, and
    the job's lease is released."""
    payload = job()
    body = shell.deliver(payload)
    assert body["status"] == "succeeded" and body["worker"] == "w1" and body["attempts"] == 1
    assert shell.stored_result(payload["job_id"]) == body
    assert shell.result_file(payload["job_id"]) is not None
    assert not shell.rds.exists(lease_key(shell.settings.key_prefix, payload["job_id"]))


@pytest.mark.parametrize("error", RETRYABLE, ids=lambda e: type(e).__name__)
def test_a_retryable_error_is_retried_on_the_shared_queue(shell: Shell, error: Exception) -> None:
    """Each retryable kind: the task retries after 2 s via the shared queue; nothing recorded."""
    payload = job(max_retries=2)
    shell.runner = raising(error)
    count_submissions(shell, payload["job_id"], 1)

    with pytest.raises(Retry) as retried:
        shell.deliver(payload)

    assert retried.value.when == 2.0 and type(error).__name__ in repr(retried.value.exc)
    [message] = shell.queued(RUN_JOB)
    assert message["id"] == payload["job_id"] and message["retries"] == 1 and message["eta"]
    assert shell.stored_result(payload["job_id"]) is None
    assert shell.result_file(payload["job_id"]) is None
    assert list_dead_letters(shell.rds, shell.settings.key_prefix) == []


class FailingPublish:
    """``Signature.apply_async`` that fails (as kombu does with its broker gone) ``failures``
    times, then publishes for real; ``waits`` counts the task's waits for Redis."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, shell: Shell, failures: int) -> None:
        self.failures, self.waits = failures, 0
        real = Signature.apply_async

        def apply_async(signature: Signature, *args: Any, **kwargs: Any) -> Any:
            if self.failures > 0:
                self.failures -= 1
                raise OperationalError(
                    "Error 111 connecting to 127.0.0.1:6379. Connection refused."
                )
            return real(signature, *args, **kwargs)

        def wait_for_redis(timeout: float) -> bool:
            self.waits += 1
            return True

        monkeypatch.setattr(Signature, "apply_async", apply_async)
        monkeypatch.setattr(shell.deps, "wait_for_redis", wait_for_redis)


def test_a_retry_the_broker_refuses_is_published_once_redis_answers(
    shell: Shell, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failover while a job retries: Celery would drop the message (``Reject(requeue=False)``,
    the job recorded as failed); the task waits for Redis and publishes the retry after all."""
    payload = job(max_retries=2)
    shell.runner = raising(redis.ConnectionError("the primary went away"))
    publish = FailingPublish(monkeypatch, shell, failures=2)

    with pytest.raises(Retry):
        shell.deliver(payload)

    assert publish.waits == 2
    [message] = shell.queued(RUN_JOB)
    assert message["id"] == payload["job_id"] and message["retries"] == 1
    assert shell.stored_result(payload["job_id"]) is None


def test_a_broker_error_out_of_the_job_runs_it_again_once_redis_answers(
    shell: Shell, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kombu's ``OperationalError`` (the broker refused a publish: a watch copy's, during a
    failover) is not the job's failure: the task waits for Redis and runs the job again."""
    payload = job()
    failures = [OperationalError("Error 111 connecting. Connection refused.")]

    def run(spec: JobSpec, ctx: JobContext) -> JobResult:
        if failures:
            raise failures.pop()
        return succeed(spec, ctx)

    shell.runner = run
    waits: list[float] = []
    monkeypatch.setattr(shell.deps, "wait_for_redis", lambda timeout: waits.append(timeout) or True)

    body = shell.deliver(payload)

    assert body["status"] == "succeeded" and len(waits) == 1
    assert shell.stored_result(payload["job_id"]) == body


def test_a_retry_that_cannot_be_published_hands_the_message_back(
    shell: Shell, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis does not come back: the message is requeued (or stays unacked for the restore
    sweep), never rejected for good, and no failure is recorded."""
    payload = job(max_retries=2)
    shell.runner = raising(redis.ConnectionError("the primary went away"))
    publish = FailingPublish(monkeypatch, shell, failures=job_task.FAILOVER_ATTEMPTS)

    with pytest.raises(Reject) as rejected:
        shell.deliver(payload)

    assert rejected.value.requeue is True
    assert publish.waits == job_task.FAILOVER_ATTEMPTS - 1
    assert shell.stored_result(payload["job_id"]) is None


@pytest.mark.parametrize("error", RETRYABLE, ids=lambda e: type(e).__name__)
def test_a_retryable_error_past_the_last_try_fails_and_is_dead_lettered(
    shell: Shell, error: Exception
) -> None:
    """Each retryable kind, once max_retries + 1 tries reached a ComfyUI: JobFailed, the failed
    result stored and in result.json, and a dead letter saying the retries ran out."""
    payload = job(max_retries=1)
    shell.runner = raising(error)
    count_submissions(shell, payload["job_id"], 2)

    with pytest.raises(job_task.JobFailed) as failed:
        shell.deliver(payload, retries=1)

    assert str(failed.value).startswith(f"{type(error).__name__}: ")
    stored = shell.stored_result(payload["job_id"])
    assert stored is not None and stored["status"] == "failed" and stored["attempts"] == 2
    assert stored["error"]["type"] == type(error).__name__
    assert shell.result_file(payload["job_id"]) == stored
    [letter] = list_dead_letters(shell.rds, shell.settings.key_prefix)
    assert letter.job_id == payload["job_id"] and letter.reason == "retries exhausted (1)"
    assert letter.spec == payload and shell.queued(RUN_JOB) == []


def test_a_job_that_never_reached_a_comfyui_gives_up_after_the_unsubmitted_bound(
    shell: Shell,
) -> None:
    """Deliveries that never reached a ComfyUI are bounded too: past max_retries + 20 the job
    fails and is dead-lettered naming both counts."""
    payload = job(max_retries=1)
    shell.runner = raising(RETRYABLE[0])

    with pytest.raises(job_task.JobFailed):
        shell.deliver(payload, retries=21)

    [letter] = list_dead_letters(shell.rds, shell.settings.key_prefix)
    assert letter.reason == "gave up after 22 deliveries, 0 reached a ComfyUI"


@pytest.mark.parametrize("error", PERMANENT, ids=lambda e: type(e).__name__)
def test_a_permanent_error_fails_at_once_without_a_dead_letter(
    shell: Shell, error: Exception
) -> None:
    """Each permanent kind: JobFailed on the first try, the error's fields in the stored
    result and result.json, no retry and no dead letter."""
    payload = job(max_retries=3)
    shell.runner = raising(error)

    with pytest.raises(job_task.JobFailed) as failed:
        shell.deliver(payload)

    to_dict = getattr(error, "to_dict")  # noqa: B009 - every kind here has one
    assert failed.value.error == to_dict()
    stored = shell.stored_result(payload["job_id"])
    assert stored is not None and stored["status"] == "failed" and stored["error"] == to_dict()
    assert shell.result_file(payload["job_id"]) == stored
    assert list_dead_letters(shell.rds, shell.settings.key_prefix) == []
    assert shell.queued(RUN_JOB) == []


def test_the_soft_time_limit_stops_the_prompt_and_fails_the_job(shell: Shell) -> None:
    """Celery's soft time limit: the prompt is cancelled on ComfyUI, the job fails with a
    JobTimeout naming the limit, recorded in Redis and result.json."""
    payload = job()
    shell.runner = raising(SoftTimeLimitExceeded())

    with pytest.raises(job_task.JobFailed, match="JobTimeout"):
        shell.deliver(payload, timelimit=(90, 60))

    assert shell.client.cancelled == [payload["job_id"]]
    stored = shell.stored_result(payload["job_id"])
    assert stored is not None and stored["error"] == {
        "type": "JobTimeout",
        "message": "the job ran past its time limit ((90, 60))",
    }
    assert shell.result_file(payload["job_id"]) == stored


def test_a_cancelled_job_is_stored_and_raised_as_cancelled(shell: Shell) -> None:
    """A cancel is stored like any ending, then JobCancelled makes Celery record a FAILURE whose
    exception says "cancelled" (Flower must not show a cancelled job as a success)."""
    payload = job()

    def cancelled(spec: JobSpec, ctx: JobContext) -> JobResult:
        result = build_result(spec, ctx, status="cancelled", outputs=[])
        write_result(ctx.store, spec, result)
        return result

    shell.runner = cancelled
    with pytest.raises(job_task.JobCancelled, match="cancelled"):
        shell.deliver(payload)
    assert shell.stored_result(payload["job_id"])["status"] == "cancelled"


def test_an_unreadable_payload_is_dead_lettered_and_fails_naming_the_field(shell: Shell) -> None:
    """A message no worker can read: a dead letter keeps it, the task fails naming the field,
    the runner never runs."""
    shell.runner = raising(AssertionError("the runner must not run"))
    bad = {"version": 1, "job_id": new_job_id(), "prompt": {"1": {"class_type": "X"}}}

    with pytest.raises(ValueError, match="prompt.1.inputs"):
        shell.deliver(bad)

    [letter] = list_dead_letters(shell.rds, shell.settings.key_prefix)
    assert letter.reason == "unreadable payload" and letter.spec == bad
    assert (letter.error or {})["field"] == "prompt.1.inputs"


def test_a_message_whose_job_id_is_not_its_task_id_is_refused(shell: Shell) -> None:
    """A job id that differs from the Celery task id could never be followed: refused."""
    payload = job()
    with pytest.raises(ValueError, match="job_id"):
        shell.deliver({**payload, "job_id": new_job_id()}, id=payload["job_id"])


def test_a_bug_in_the_runner_propagates_and_records_nothing(shell: Shell) -> None:
    """An error that is no job outcome (a bug) propagates with its traceback: no result, no
    result.json, no dead letter, and the lease is released."""
    payload = job()
    shell.runner = raising(KeyError("oops"))

    with pytest.raises(KeyError):
        shell.deliver(payload)

    assert shell.stored_result(payload["job_id"]) is None
    assert shell.result_file(payload["job_id"]) is None
    assert list_dead_letters(shell.rds, shell.settings.key_prefix) == []
    assert not shell.rds.exists(lease_key(shell.settings.key_prefix, payload["job_id"]))


def test_a_watch_of_a_finished_job_ends_without_running_it(shell: Shell) -> None:
    """A watch copy that finds the job's result ends with Ignore; the runner never runs."""
    payload = job()
    shell.deliver(payload)
    shell.runner = raising(AssertionError("ran twice"))

    with pytest.raises(Ignore):
        shell.deliver(payload, **{WATCH_HEADER: 1})


def test_the_webhook_is_handed_to_the_webhook_task(shell: Shell) -> None:
    """A job with a webhook_url queues one webhook message naming the job (the sender signs the
    result stored for it, never a body from the broker); the job's own task does not post it."""
    payload = job(webhook_url="http://127.0.0.1:9/hook")
    body = shell.deliver(payload)

    [message] = shell.queued(DELIVER_WEBHOOK)
    assert message["args"] == [{"url": "http://127.0.0.1:9/hook", "job_id": payload["job_id"]}]
    assert shell.stored_result(payload["job_id"]) == body


def test_tries_that_only_collect_and_fail_on_the_store_use_up_retries(shell: Shell) -> None:
    """The prompt was POSTed once; every later try only collects and fails on a full disk.
    Those tries count: after max_retries + 1 of them the job fails and is dead-lettered,
    instead of retrying for as long as the unsubmitted-tries bound allows (issue 13 #9)."""
    payload = job(max_retries=2)
    shell.runner = raising(StorageUnavailable(key="a/9_0_b.png", reason="No space left (ENOSPC)"))
    count_submissions(shell, payload["job_id"], 1)

    for retries in range(2):
        with pytest.raises(Retry):
            shell.deliver(payload, retries=retries)
    with pytest.raises(job_task.JobFailed):
        shell.deliver(payload, retries=2)

    [letter] = list_dead_letters(shell.rds, shell.settings.key_prefix)
    assert letter.reason == "retries exhausted (2)"
