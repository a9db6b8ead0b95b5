"""The Celery task: a thin shell around :func:`comfyfarm.worker.runner.run_job`.

It handles only what Celery must: decoding the payload, the job lease, progress as Celery state and
task events, cancel checks, retries of retryable failures with backoff, the final record, and
handing the completion webhook to ``worker.webhook_task`` (never delivered here: a receiver that
is down must not hold this GPU's pipeline slot). Outcomes:

- succeeded → the task returns the ``JobResult`` dict (Celery ``SUCCESS``);
- retryable failure (ComfyUI unreachable or restarted, 5xx, storage or input source
  unavailable) → retried after 2, 4, 8 ... seconds on the *shared* queue (any healthy worker may
  take it), up to the job's ``max_retries``; after the last one it is a failure and a
  ``DeadLetter`` is pushed;
- failed → the ``JobResult`` is stored under the job's result key, then ``JobFailed`` is raised
  (Celery ``FAILURE``, so Flower shows the node, type and message);
- a payload no worker can read → a ``DeadLetter`` keeps it, the task fails naming the field;
- cancelled → the task returns the ``JobResult`` dict with status ``cancelled`` (Celery
  ``SUCCESS``: a custom REVOKED state with our meta would break Celery's own result readers);
- a copy that finds the job's lease held watches it: renewed (the job runs elsewhere) or the job
  finished meanwhile → ``Ignore``, nothing runs (a renewed lease also sends a delayed *watch*
  copy, ``worker.copies``, so the job survives its worker dying later); expired (its holder
  died) → it takes over.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import uuid
from dataclasses import dataclass
from typing import Any

import redis
from celery import Celery, Task
from celery.exceptions import Ignore, SoftTimeLimitExceeded

from comfyfarm.comfy.client import ComfyClient
from comfyfarm.comfy.errors import ComfyPermanent, ComfyRetryable
from comfyfarm.storage import OutputStore, open_store
from comfyfarm.storage.base import StorageError, StorageUnavailable
from comfyfarm.tasks.connect import redis_client
from comfyfarm.tasks.errors import JobSpecError, PayloadError
from comfyfarm.tasks.keys import (
    DeadLetter,
    Lease,
    cancel_requested,
    job_result_key,
    lease_key,
    push_dead_letter,
    submission_count_key,
    submission_key,
)
from comfyfarm.tasks.models import PROGRESS_STATE, JobProgress, JobResult, JobSpec
from comfyfarm.tasks.names import PROGRESS_EVENT, RUN_JOB
from comfyfarm.tasks.routing import SHARED_QUEUE
from comfyfarm.tasks.settings import Settings
from comfyfarm.worker import webhook_task
from comfyfarm.worker.copies import claim_lease, is_watch, send_watch
from comfyfarm.worker.inputs import InputFileError, InputUnavailable
from comfyfarm.worker.progress_sender import ProgressSender
from comfyfarm.worker.runner import JobContext, build_result, cancel_prompt, run_job, write_result

log = logging.getLogger(__name__)

#: Largest unreadable payload kept whole in a dead letter (JSON characters).
MAX_LETTER_PAYLOAD = 256 * 1024


class JobFailed(Exception):
    """Raised (and recorded by Celery as FAILURE) when a job ends in a failure.

    The message is what Flower shows ("ExecutionFailed: node 3 (KSampler): ..."); ``error`` is
    the JobResult's error dict. Celery stores only the message, so the JobResult itself is kept
    under ``comfyfarm.tasks.keys.job_result_key`` for producers.
    """

    def __init__(self, message: str, *, job_id: str = "", error: dict[str, Any] | None = None):
        super().__init__(message)
        self.job_id = job_id
        self.error = error or {}


@dataclass
class WorkerBinding:
    """What a worker process is bound to; set once by the worker bootstrap before forking."""

    settings: Settings
    comfy_url: str
    worker_name: str
    client_id: str


_binding: WorkerBinding | None = None
_local = threading.local()


def bind(binding: WorkerBinding) -> None:
    global _binding
    _binding = binding


def _resources() -> tuple[WorkerBinding, ComfyClient, OutputStore, redis.Redis]:
    """Per-process clients, made lazily in the pool child (nothing is shared across a fork)."""
    assert _binding is not None, "worker.task.bind() was not called"
    if getattr(_local, "client", None) is None:
        _local.client = ComfyClient(_binding.comfy_url)
        settings = _binding.settings
        _local.store = open_store(settings.storage_url, digest=settings.output_digest)
        _local.redis = redis_client(_binding.settings)
        # One WebSocket identity per pool process: with pipelining several processes follow
        # prompts on the same ComfyUI, and ComfyUI keeps only the newest socket of a client id.
        _local.client_id = f"{_binding.client_id}-{os.getpid()}"
    return _binding, _local.client, _local.store, _local.redis


def warm_up(app: Celery) -> None:
    """Open, in this pool process at fork, every connection its first job would open: the
    ComfyUI client (route probes), our Redis, the result backend (progress, results) and the
    event producer (Flower's task events). Otherwise each first job pays for them while its GPU
    waits, all pool processes of all workers at once when a burst of jobs arrives. Best effort:
    what is down now is retried by the first job."""
    try:
        _, client, _, rds = _resources()
        _ = client.has_jobs_api  # probes /api and the jobs API once, cached for every job
        rds.ping()
        app.backend.client.ping()
        with app.producer_or_acquire() as producer:
            producer.connection.ensure_connection(max_retries=1)
    except Exception as exc:  # warm-up must never stop a pool process
        log.info("warm-up of a pool process failed (%s); the first job will retry", exc)


def _client_id() -> str:
    return str(_local.client_id)


#: Tries of one job that fail before its prompt reached any ComfyUI (refused connections while
#: ComfyUI restarts, an input source that is down) do not use up its ``max_retries``; this many
#: more deliveries bound them.
MAX_UNSUBMITTED_RETRIES = 20


def register(app: Celery) -> Task:
    """Register the job task on ``app`` and return it."""

    task_options = {
        "name": RUN_JOB,
        "bind": True,
        "acks_late": True,
        "reject_on_worker_lost": True,
        "throws": (JobFailed,),  # an expected outcome: logged without a traceback
    }

    @app.task(**task_options)  # type: ignore[untyped-decorator]
    def run_comfy_job(self: Task, payload: dict[str, Any]) -> dict[str, Any]:
        return execute(self, payload)

    return run_comfy_job


def execute(task: Task, payload: dict[str, Any]) -> dict[str, Any]:
    """The body of the RUN_JOB task (see the module docstring for the outcomes)."""
    binding, client, store, rds = _resources()
    settings = binding.settings
    try:
        spec = JobSpec.from_dict(payload)
        if task.request.id and spec.job_id != task.request.id:
            # Results, progress and cancel are keyed by the task id, leases and outputs by the
            # job id: a message where they differ could never be followed by its producer.
            raise JobSpecError(field="job_id", reason="must equal the Celery task id")
    except PayloadError as exc:
        # No worker can run this message; keep it for a person to look at, then fail the task
        # with a message naming the field.
        _dead_letter(rds, settings, _unreadable_letter(task, binding, payload, exc))
        raise
    if is_watch(task) and rds.exists(job_result_key(settings.key_prefix, spec.job_id)):
        log.info("job %s has finished: its watch ends", spec.job_id)
        raise Ignore()
    lease = Lease(
        rds,
        lease_key(settings.key_prefix, spec.job_id),
        owner=f"{binding.worker_name}:{uuid.uuid4().hex}",
        ttl=settings.lease_seconds,
    )
    acquired, waited = claim_lease(lease)
    if not acquired:
        countdown = send_watch(task, payload, settings)
        log.warning(
            "job %s is running elsewhere (lease held by %s, renewed): not running it twice; "
            "watching it again in %.0f s",
            spec.job_id,
            lease.holder(),
            countdown,
        )
        raise Ignore()
    if waited and rds.exists(job_result_key(settings.key_prefix, spec.job_id)):
        lease.release()
        log.warning("job %s finished elsewhere while this copy waited: not running it again",
                    spec.job_id)  # fmt: skip
        raise Ignore()
    progress = ProgressSender(_ProgressWriter(task))
    ledger = RedisLedger(rds, settings.key_prefix, ttl=int(settings.result_expires))
    ctx = JobContext(
        client=client,
        store=store,
        client_id=_client_id(),
        worker_name=binding.worker_name,
        on_progress=progress.offer,
        cancel_requested=lambda: _cancel_requested(rds, settings.key_prefix, spec.job_id),
        attempts=task.request.retries + 1,
        ledger=ledger,
    )
    letter_reason: str | None = None
    with lease.keep_alive(), contextlib.closing(progress):
        try:
            result = run_job(spec, ctx)
        except (ComfyRetryable, StorageUnavailable, InputUnavailable) as exc:
            retries = task.request.retries
            submitted = ledger.submissions(spec.job_id, unknown=retries + 1)
            limit = spec.max_retries + MAX_UNSUBMITTED_RETRIES
            if submitted <= spec.max_retries and retries < limit:
                countdown = retry_countdown(retries)
                used = f"{submitted} of {spec.max_retries + 1} tries used"
                log.warning("job %s: %s; retry in %.0f s (%s)", spec.job_id, exc, countdown, used)
                # The shared queue: any healthy worker may take it, not only this one.
                raise task.retry(
                    exc=exc, countdown=countdown, queue=SHARED_QUEUE, max_retries=limit
                ) from exc
            result = build_result(spec, ctx, status="failed", outputs=[], error=_error_dict(exc))
            letter_reason = (
                f"retries exhausted ({spec.max_retries})"
                if submitted > spec.max_retries
                else f"gave up after {retries + 1} deliveries, {submitted} reached a ComfyUI"
            )
        except (ComfyPermanent, InputFileError, StorageError) as exc:
            result = build_result(spec, ctx, status="failed", outputs=[], error=_error_dict(exc))
        except SoftTimeLimitExceeded:
            # Celery's limit fired before the runner's own deadline: stop the prompt, fail the job.
            cancel_prompt(client, spec.job_id)
            error = {
                "type": "JobTimeout",
                "message": f"the job ran past its time limit ({task.request.timelimit})",
            }
            result = build_result(spec, ctx, status="failed", outputs=[], error=error)
    return _conclude(task, spec, store, rds, settings, result, letter_reason=letter_reason)


def _cancel_requested(rds: redis.Redis, prefix: str, job_id: str) -> bool:
    """The cancel flag; a Redis blip reads as "not cancelled" (checked again in half a second)
    rather than failing a running job."""
    try:
        return cancel_requested(rds, prefix, job_id)
    except redis.RedisError as exc:
        log.warning("could not check the cancel flag of job %s: %s", job_id, exc)
        return False


def retry_countdown(retries: int) -> float:
    """Seconds before retry number ``retries + 1``: 2, 4, 8 ... capped at a minute."""
    return min(60.0, 2.0 * 2.0**retries)


def _conclude(
    task: Task,
    spec: JobSpec,
    store: OutputStore,
    rds: redis.Redis,
    settings: Settings,
    result: JobResult,
    *,
    letter_reason: str | None = None,
) -> dict[str, Any]:
    """Record ``result`` (Redis, result.json of failures, dead letter, webhook); raise JobFailed
    for a failure, else return the result dict as the task's value."""
    body = result.to_dict()
    encoded = json.dumps(body, sort_keys=True).encode()
    rds.set(
        job_result_key(settings.key_prefix, spec.job_id), encoded, ex=int(settings.result_expires)
    )
    if result.status == "failed":
        try:
            write_result(store, spec, result)  # the runner wrote it for the other outcomes
        except StorageError:
            log.exception("could not write result.json for job %s", spec.job_id)
    if letter_reason is not None:
        letter = DeadLetter(
            job_id=spec.job_id,
            reason=letter_reason,
            error=result.error,
            worker=result.worker,
            attempts=result.attempts,
            spec=spec.to_dict(),
        )
        _dead_letter(rds, settings, letter)
    if spec.webhook_url:
        _enqueue_webhook(task, spec, body)
    if result.status == "failed":
        error = result.error or {}
        message = f"{error.get('type', 'Error')}: {error.get('message', '')}"
        raise JobFailed(message, job_id=spec.job_id, error=error)
    return body


def _enqueue_webhook(task: Task, spec: JobSpec, body: dict[str, Any]) -> None:
    """Hand the webhook to ``comfyfarm.worker.webhook_task``; the job is done either way."""
    assert spec.webhook_url is not None
    try:
        webhook_task.enqueue(task.app, spec.webhook_url, body, job_id=spec.job_id)
    except Exception:  # the result is stored; a lost webhook must not fail the job
        log.exception("could not enqueue the webhook of job %s", spec.job_id)


def _dead_letter(rds: redis.Redis, settings: Settings, letter: DeadLetter) -> None:
    try:
        push_dead_letter(rds, settings.key_prefix, letter)
    except redis.RedisError:
        log.exception("could not record dead letter for job %s", letter.job_id)
    else:
        log.error("job %s given up: %s", letter.job_id, letter.reason)


def _unreadable_letter(
    task: Task, binding: WorkerBinding, payload: object, exc: PayloadError
) -> DeadLetter:
    try:
        raw = json.dumps(payload)
    except (TypeError, ValueError):
        raw = ""
    kept = payload if isinstance(payload, dict) and len(raw) <= MAX_LETTER_PAYLOAD else None
    return DeadLetter(
        job_id=str(task.request.id or ""),
        reason="unreadable payload",
        error=exc.to_dict(),
        worker=binding.worker_name,
        attempts=task.request.retries + 1,
        spec=kept,
    )


class RedisLedger:
    """Where each job's prompt was POSTed, and how many times, in Redis (see
    ``worker.runner.SubmissionLedger``). A POST is counted before it is sent: one whose answer
    was lost still counts."""

    def __init__(self, client: redis.Redis, prefix: str, *, ttl: int) -> None:
        self._client, self._prefix, self._ttl = client, prefix, ttl

    def where(self, job_id: str) -> str | None:
        value = self._client.get(submission_key(self._prefix, job_id))
        return value.decode() if isinstance(value, bytes) else value

    def record(self, job_id: str, comfy_url: str) -> None:
        count_key = submission_count_key(self._prefix, job_id)
        with self._client.pipeline(transaction=True) as pipe:
            pipe.set(submission_key(self._prefix, job_id), comfy_url, ex=self._ttl)
            pipe.incr(count_key)
            pipe.expire(count_key, self._ttl)
            pipe.execute()

    def submissions(self, job_id: str, *, unknown: int) -> int:
        """How many times the job's prompt was POSTed to a ComfyUI; ``unknown`` if Redis
        cannot say."""
        try:
            value = self._client.get(submission_count_key(self._prefix, job_id))
        except redis.RedisError as exc:
            log.warning("could not read the submissions of job %s: %s", job_id, exc)
            return unknown
        return int(value or 0)


class _ProgressWriter:
    """Progress to the result backend (producers) and as task events (Flower); called from the
    job's ``ProgressSender`` thread, which decides how often.

    The task's request is thread-local, so its id and hostname are taken here, on the job's
    thread. Backend writes go through ``store_result`` without the request, so the prompt in the
    task's args is not written and published again with every update (``result_extended``).
    """

    def __init__(self, task: Task) -> None:
        self._app = task.app
        self._backend = task.backend
        self._task_id = task.request.id
        self._hostname = task.request.hostname
        self._retry_policy = task.app.conf.task_publish_retry_policy

    def __call__(self, progress: JobProgress) -> None:
        meta = progress.to_dict()
        if not self._task_id:
            return
        self._backend.store_result(self._task_id, meta, PROGRESS_STATE)
        # Not "worker": event fields become attributes of Flower's task record, and a string
        # there replaces its Worker object (Flower's /api/tasks then fails with HTTP 500).
        # The event's hostname already names the worker.
        with self._app.events.default_dispatcher(hostname=self._hostname) as dispatcher:
            dispatcher.send(
                PROGRESS_EVENT,
                uuid=self._task_id,
                retry=True,
                retry_policy=self._retry_policy,
                **_event_fields(meta),
            )


def _event_fields(meta: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in meta.items() if key != "worker"}


def _error_dict(exc: BaseException) -> dict[str, Any]:
    to_dict = getattr(exc, "to_dict", None)
    if callable(to_dict):
        return dict(to_dict())
    return {"type": type(exc).__name__, "message": str(exc)}
