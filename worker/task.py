"""The Celery task: a shell around ``worker.runner.run_job`` and ``worker.policy``.

It does only what needs Celery: reading the request, progress as Celery state and task events,
turning the policy's decisions into ``retry``/``Ignore``/``JobFailed``, sending a watch copy
(``worker.copies``) and handing the completion webhook to ``worker.webhook_task`` (never
delivered here: a receiver that is down must not hold this GPU's pipeline slot). Everything it
uses comes from ``WorkerDeps`` (``worker.deps``), given to ``register``. Outcomes:

- succeeded → the task returns the ``JobResult`` dict (Celery ``SUCCESS``, written in two
  commands after the job's progress: ``worker.task_backend``, as is a ``JobFailed`` or
  ``JobCancelled`` FAILURE);
- retryable failure (``worker.job_errors.Retryable``) → retried after 2, 4, 8 ... seconds on
  the *shared* queue (any healthy worker may take it) while the policy allows; after that it is
  a failure and a ``DeadLetter`` is pushed; a retry the broker refuses (a failover) is
  published again once Redis answers, or the message handed back, never dropped;
- failed (``Permanent``, retries exhausted, Celery's soft time limit) → the ``JobResult`` is
  stored under the job's result key and in ``result.json``, then ``JobFailed`` is raised
  (Celery ``FAILURE``, so Flower shows the node, type and message);
- a payload no worker can read → a ``DeadLetter`` keeps it, the task fails naming the field;
- cancelled → the ``JobResult`` (status ``cancelled``) is stored like a failure's, then
  ``JobCancelled`` is raised: Celery ``FAILURE`` whose exception says "cancelled", so Flower
  never shows a cancelled job as a success (producers read ``cancelled`` from the stored result
  and from the exception type, ``producer.outcome.status_word``);
- a copy that finds the job running elsewhere sends a watch and ends with ``Ignore``; one that
  finds it finished ends with ``Ignore``; nothing runs twice.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from celery import Celery, Task
from celery.exceptions import Ignore, Reject, SoftTimeLimitExceeded
from celery.exceptions import Retry as CeleryRetry
from kombu.exceptions import OperationalError

from comfyfarm.tasks.errors import PayloadError
from comfyfarm.tasks.names import RUN_JOB
from comfyfarm.tasks.routing import SHARED_QUEUE
from comfyfarm.worker import webhook_task
from comfyfarm.worker.copies import is_watch, send_watch
from comfyfarm.worker.deps import WorkerDeps
from comfyfarm.worker.job_errors import (
    REDIS_FAILOVER,
    JobCancelled,
    JobError,
    JobFailed,
    JobTimeout,
    classify,
)  # fmt: skip
from comfyfarm.worker.policy import Admission, Retry, fail, read_spec
from comfyfarm.worker.progress_sender import ProgressSender
from comfyfarm.worker.runner import cancel_prompt
from comfyfarm.worker.task_backend import JobStatesBackend
from comfyfarm.worker.task_progress import TaskProgressWriter

log = logging.getLogger(__name__)
#: Errors out of a job that say Redis is failing over, not that the job failed.
FAILING_OVER: tuple[type[BaseException], ...] = (*REDIS_FAILOVER, OperationalError)
#: How often, and how long each time, a job waits for the farm's Redis to answer again.
FAILOVER_ATTEMPTS, FAILOVER_WAIT = 5, 30.0


def register(app: Celery, deps: WorkerDeps) -> Task:
    """Register the job task on ``app``, bound to ``deps``, and return it."""

    outcomes = (JobFailed, JobCancelled)
    # The job's final state goes through the ProgressStore of its progress: 2 commands, not 5.
    backend = JobStatesBackend(app, own_failures=outcomes)

    @app.task(name=RUN_JOB, bind=True, acks_late=True, reject_on_worker_lost=True, shared=False,
              throws=outcomes, backend=backend)  # type: ignore[untyped-decorator]  # fmt: skip
    def run_comfy_job(self: Task, payload: dict[str, Any]) -> dict[str, Any]:
        # Redis failing over (lease, ledger, result; or the broker refusing a watch copy's
        # publish): the message is still ours (acks late), so wait for Redis and run again; the
        # ledger and ComfyUI make it follow, never re-POST.
        for attempt in range(FAILOVER_ATTEMPTS):
            try:
                return execute(self, payload, deps)
            except FAILING_OVER as exc:
                if not redis_back_for_another_try(attempt, deps):
                    raise
                log.warning("the farm's Redis was unavailable (%s); running the job again", exc)
        raise AssertionError("unreachable")

    return run_comfy_job


def redis_back_for_another_try(attempt: int, deps: WorkerDeps) -> bool:
    """After try ``attempt`` (0-based) of ``FAILOVER_ATTEMPTS`` met a failing-over Redis:
    whether to try again, i.e. tries are left and Redis answered within ``FAILOVER_WAIT``."""
    return attempt + 1 < FAILOVER_ATTEMPTS and deps.wait_for_redis(FAILOVER_WAIT)


def publish_retry(task: Task, error: JobError, step: Retry, deps: WorkerDeps) -> CeleryRetry:
    """Publish the job's next try on the shared queue (any healthy worker may take it, not only
    this one) and return Celery's ``Retry`` to raise.

    Celery turns a retry it cannot publish into ``Reject(requeue=False)``: the message is dropped
    and the job recorded as failed. During a broker failover that would fail a healthy job, so
    the publish waits for Redis and is tried again; if Redis stays away, the message is handed
    back (``Reject(requeue=True)``: requeued, or left unacked for the restore sweep)."""
    for attempt in range(FAILOVER_ATTEMPTS):
        try:
            retried: CeleryRetry = task.retry(
                exc=error.cause or error, countdown=step.countdown, queue=SHARED_QUEUE,
                max_retries=step.max_retries, throw=False,
            )  # fmt: skip
            return retried
        except Reject as rejected:
            if not redis_back_for_another_try(attempt, deps):
                raise Reject(rejected.reason, requeue=True) from None
            log.warning("could not publish the retry of a job (%s); trying again", rejected.reason)
    raise AssertionError("unreachable")


def warm_up(app: Celery, deps: WorkerDeps) -> None:
    """Open, in this pool process at fork, every connection its first job would open: the
    ComfyUI client (route probes), our Redis, the result backend (progress, results) and the
    event producer (Flower's task events). Otherwise each first job pays for them while its GPU
    waits, all pool processes of all workers at once when a burst of jobs arrives. Best effort:
    what is down now is retried by the first job."""
    try:
        opened = deps.open()
        _ = opened.client.has_jobs_api  # probes /api and the jobs API once, cached for every job
        # The cancel watch subscribes before the first job asks, and before the PING, so the
        # connection the PING opens stays idle in the pool for the first job's commands.
        opened.cancels.start()
        opened.redis.ping()
        app.backend.client.ping()
        with app.producer_or_acquire() as producer:
            producer.connection.ensure_connection(max_retries=1)
            # The pooled producer's channel is what the job's task events are published on;
            # kombu opens its socket on the first command: now, not during the first job.
            with producer.channel.conn_or_acquire() as client:
                client.ping()
    except Exception as exc:  # warm-up must never stop a pool process
        log.info("warm-up of a pool process failed (%s); the first job will retry", exc)


def execute(task: Task, payload: dict[str, Any], deps: WorkerDeps) -> dict[str, Any]:
    """The body of the RUN_JOB task (see the module docstring for the outcomes)."""
    policy, request = deps.open().policy, task.request
    try:
        spec = read_spec(payload, task_id=request.id)
    except PayloadError as exc:
        policy.reject_payload(payload, exc, task_id=str(request.id or ""),
                              attempts=request.retries + 1)  # fmt: skip
        raise
    admission, lease = policy.admit(spec, watch=is_watch(task))
    if admission is Admission.RUNNING_ELSEWHERE:
        countdown = send_watch(task, payload, deps.settings)
        log.warning(
            "job %s is running elsewhere (lease held by %s, renewed): not running it twice; "
            "watching it again in %.0f s", spec.job_id, lease.holder(), countdown,
        )  # fmt: skip
    if admission is not Admission.RUN:
        raise Ignore()
    progress = ProgressSender(
        TaskProgressWriter(task), min_interval=deps.settings.progress_interval
    )
    # The first cancel check reads the flag and the ledger entry in one MGET (worker.ledger).
    ledger = deps.job_ledger(spec.job_id)
    cancel = deps.cancel_check(spec.job_id, ledger=ledger)
    ctx = deps.job_context(spec, on_progress=progress.offer, attempts=request.retries + 1,
                           cancel_requested=cancel, ledger=ledger)  # fmt: skip
    letter_reason: str | None = None
    with lease.keep_alive(), contextlib.closing(progress), contextlib.closing(cancel):
        error: JobError | None = None
        try:
            result = deps.run(spec, ctx)
        except SoftTimeLimitExceeded:
            # Celery's limit fired before the runner's own deadline: stop the prompt, fail the job.
            cancel_prompt(ctx.client, spec.job_id)
            error = JobTimeout(limit=request.timelimit)
        except Exception as exc:
            error = classify(exc)
            if error is None:
                raise  # a bug, not a job outcome: Celery records it with its traceback
        if error is not None:
            step = policy.after_error(spec, error, retries=request.retries)
            if isinstance(step, Retry):
                raise publish_retry(task, error, step, deps)
            result, letter_reason = fail(spec, ctx, step.error), step.letter_reason
    policy.conclude(spec, result, letter_reason=letter_reason)
    body = result.to_dict()
    if spec.webhook_url:
        try:
            webhook_task.enqueue(task.app, spec.webhook_url, body, job_id=spec.job_id)
        except Exception:  # the result is stored; a lost webhook must not fail the job
            log.exception("could not enqueue the webhook of job %s", spec.job_id)
    if result.status == "failed":
        error_dict = result.error or {}
        message = f"{error_dict.get('type', 'Error')}: {error_dict.get('message', '')}"
        raise JobFailed(message, job_id=spec.job_id, error=error_dict)
    if result.status == "cancelled":
        error_dict = result.error or {}
        raise JobCancelled(f"cancelled: {error_dict.get('message') or 'by request'}",
                           job_id=spec.job_id, error=error_dict)  # fmt: skip
    return body
