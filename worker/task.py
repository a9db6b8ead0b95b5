"""The Celery task: a thin shell around :func:`worker.runner.run_job`.

It handles only what Celery must: decoding the payload, the job lease, progress as Celery state and
task events, cancel checks, retries of retryable failures with backoff, the final record and the
webhook. Outcomes:

- succeeded → the task returns the ``JobResult`` dict (Celery ``SUCCESS``);
- failed → the ``JobResult`` is stored under the job's result key, then ``JobFailed`` is raised
  (Celery ``FAILURE``, so Flower shows the node, type and message);
- cancelled → the task returns the ``JobResult`` dict with status ``cancelled`` (Celery
  ``SUCCESS``: a custom REVOKED state with our meta would break Celery's own result readers);
- a redelivered copy that finds a live lease held by another worker ends with ``Ignore`` and runs
  nothing.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import redis
from celery import Celery, Task
from celery.exceptions import Ignore

from tasks.keys import Lease, cancel_requested, job_result_key, lease_key
from tasks.models import PROGRESS_STATE, JobProgress, JobResult, JobSpec
from tasks.names import PROGRESS_EVENT, RUN_JOB
from tasks.routing import SHARED_QUEUE
from tasks.settings import Settings
from worker.comfy.client import ComfyClient
from worker.comfy.errors import ComfyPermanent, ComfyRetryable
from worker.inputs import InputFileError
from worker.runner import JobContext, build_result, run_job, write_result
from worker.storage import OutputStore, open_store
from worker.storage.base import StorageError, StorageUnavailable
from worker.webhook import deliver

log = logging.getLogger(__name__)


class JobFailed(Exception):
    """Raised (and recorded by Celery as FAILURE) when a job ends in a permanent failure."""


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
        _local.store = open_store(_binding.settings.storage_url)
        _local.redis = redis.Redis.from_url(_binding.settings.broker_url)
    return _binding, _local.client, _local.store, _local.redis


def register(app: Celery) -> Task:
    """Register the job task on ``app`` and return it."""

    task_options = {"name": RUN_JOB, "bind": True, "acks_late": True, "reject_on_worker_lost": True}

    @app.task(**task_options)  # type: ignore[untyped-decorator]
    def run_comfy_job(self: Task, payload: dict[str, Any]) -> dict[str, Any]:
        return execute(self, payload)

    return run_comfy_job


def execute(task: Task, payload: dict[str, Any]) -> dict[str, Any]:
    binding, client, store, rds = _resources()
    settings = binding.settings
    spec = JobSpec.from_dict(
        payload
    )  # a bad payload fails the task with a message naming the field
    lease = Lease(
        rds,
        lease_key(settings.key_prefix, spec.job_id),
        owner=f"{binding.worker_name}:{uuid.uuid4().hex}",
        ttl=settings.lease_seconds,
    )
    if not lease.acquire():
        log.warning(
            "job %s is running elsewhere (lease held by %s): not running it twice",
            spec.job_id,
            lease.holder(),
        )
        raise Ignore()
    ctx = JobContext(
        client=client,
        store=store,
        client_id=binding.client_id,
        worker_name=binding.worker_name,
        on_progress=_ProgressReporter(task),
        cancel_requested=lambda: cancel_requested(rds, settings.key_prefix, spec.job_id),
        attempts=task.request.retries + 1,
    )
    with lease.keep_alive():
        try:
            result = run_job(spec, ctx)
        except (ComfyRetryable, StorageUnavailable) as exc:
            if task.request.retries < spec.max_retries:
                countdown = min(60.0, 2.0 * 2**task.request.retries)
                log.warning("job %s: %s; retrying in %.0f s", spec.job_id, exc, countdown)
                raise task.retry(exc=exc, countdown=countdown, queue=SHARED_QUEUE) from exc
            result = build_result(spec, ctx, status="failed", outputs=[], error=_error_dict(exc))
        except (ComfyPermanent, InputFileError, StorageError) as exc:
            result = build_result(spec, ctx, status="failed", outputs=[], error=_error_dict(exc))
    return _conclude(task, spec, store, rds, settings, result)


def _conclude(
    task: Task,
    spec: JobSpec,
    store: OutputStore,
    rds: redis.Redis,
    settings: Settings,
    result: JobResult,
) -> dict[str, Any]:
    body = result.to_dict()
    encoded = json.dumps(body, sort_keys=True).encode()
    rds.set(
        job_result_key(settings.key_prefix, spec.job_id), encoded, ex=int(settings.result_expires)
    )
    if result.status != "succeeded":
        try:
            write_result(store, spec, result)
        except StorageError:
            log.exception("could not write result.json for job %s", spec.job_id)
    if spec.webhook_url:
        deliver(spec.webhook_url, encoded, job_id=spec.job_id, secret=settings.webhook_secret)
    if result.status == "failed":
        error = result.error or {}
        raise JobFailed(f"{error.get('type', 'Error')}: {error.get('message', '')}")
    return body


class _ProgressReporter:
    """Progress to the result backend (producers) and as task events (Flower).

    Backend writes go through ``store_result`` without the request, so the prompt in the task's
    args is not written and published again with every update (``result_extended``). Writes are
    throttled to one per ``min_interval`` except when the phase or node changes.
    """

    def __init__(self, task: Task, *, min_interval: float = 1.0) -> None:
        self._task = task
        self._min_interval = min_interval
        self._last_key: tuple[str, str | None] | None = None
        self._last_sent = 0.0

    def __call__(self, progress: JobProgress) -> None:
        key = (progress.phase, progress.node)
        now = time.monotonic()
        if key == self._last_key and now - self._last_sent < self._min_interval:
            return
        self._last_key, self._last_sent = key, now
        meta = progress.to_dict()
        task_id = self._task.request.id
        if task_id:
            self._task.backend.store_result(task_id, meta, PROGRESS_STATE)
        self._task.send_event(PROGRESS_EVENT, **meta)


def _error_dict(exc: BaseException) -> dict[str, Any]:
    to_dict = getattr(exc, "to_dict", None)
    if callable(to_dict):
        return dict(to_dict())
    return {"type": type(exc).__name__, "message": str(exc)}
