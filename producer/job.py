"""Job: a handle on one submitted job — status, progress, result, wait, cancel.

``wait`` follows the job's Celery result channel (``producer.waiting``: a missed message or a
reconnect costs at most a couple of seconds). It returns a JobResult for succeeded, failed and
cancelled jobs alike and raises ``JobTimeout`` when time runs out. To follow many jobs, use
``Farm.as_completed`` (one subscription for all of them) rather than a thread per ``wait``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import redis
from celery import Celery

from comfyfarm.producer.errors import JobTimeout, WaitTimeout
from comfyfarm.producer.outcome import (
    FINAL_STATUSES,
    JobState,
    progress_from,
    read_state,
    result_from,
    status_word,
)
from comfyfarm.producer.waiting import ResultWaiter
from comfyfarm.tasks.control import request_cancel
from comfyfarm.tasks.models import JobProgress, JobResult, JobSpec
from comfyfarm.tasks.settings import Settings

ProgressCallback = Callable[[JobProgress], None]


@dataclass(frozen=True)
class JobContext:
    """What a Job needs from its Farm: the app (for revoke), our Redis, the results Redis."""

    app: Celery
    client: redis.Redis
    results: redis.Redis
    settings: Settings


@dataclass(frozen=True)
class CancelOutcome:
    """What ``cancel()`` did. A job that already finished is left alone (nothing done)."""

    job_id: str
    status_before: str
    flag_set: bool
    revoke_sent: bool
    marked_revoked: bool

    def __str__(self) -> str:
        if self.status_before in FINAL_STATUSES:
            return f"job {self.job_id} already {self.status_before}: nothing to cancel"
        done = ["cancel flag set" if self.flag_set else "cancel flag was already set"]
        if self.revoke_sent:
            done.append("revoke broadcast")
        if self.marked_revoked:
            done.append("marked cancelled while still queued")
        return f"job {self.job_id} ({self.status_before}): " + ", ".join(done)


class Job:
    """A submitted job, by id. Cheap to create; every method asks Redis afresh."""

    def __init__(
        self,
        ctx: JobContext,
        job_id: str,
        *,
        spec: JobSpec | None = None,
        queue: str | None = None,
    ) -> None:
        self._ctx = ctx
        self.job_id = job_id
        self.spec = spec
        self.queue = queue  # where it was sent, when this handle came from a submit

    def __repr__(self) -> str:
        return f"Job({self.job_id!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Job) and other.job_id == self.job_id

    def __hash__(self) -> int:
        return hash(self.job_id)

    # -- snapshots ------------------------------------------------------------------------------
    def _state(self) -> JobState:
        ctx = self._ctx
        return read_state(ctx.client, ctx.results, ctx.settings.key_prefix, self.job_id)

    def status(self) -> str:
        """unknown | queued | running | cancelling | retrying | succeeded | failed | cancelled.

        ``unknown``: this farm never saw the id (or its record expired); ``cancelling``: cancel
        was requested and the worker has not stopped yet.
        """
        return status_word(self._state())

    def progress(self) -> JobProgress | None:
        """The latest progress while the job runs, else None."""
        return progress_from(self._state())

    def result(self) -> JobResult | None:
        """The JobResult if the job finished (in any way), else None. Does not wait."""
        return result_from(self._ctx.client, self._ctx.settings.key_prefix, self._state())

    # -- waiting --------------------------------------------------------------------------------
    def wait(
        self, timeout: float | None, *, on_progress: ProgressCallback | None = None
    ) -> JobResult:
        """Block until the job finishes and return its JobResult (also for failed/cancelled).

        ``timeout``: seconds, or None for no limit. ``on_progress`` is called with each new
        JobProgress (from this thread). Raises ``JobTimeout`` naming the job. Redis outages are
        ridden out (reconnecting every second) until the timeout.
        """
        waiter = ResultWaiter(
            self._ctx.client,
            self._ctx.results,
            self._ctx.settings.key_prefix,
            [self.job_id],
            on_progress=None if on_progress is None else lambda _, progress: on_progress(progress),
        )
        try:
            for result in waiter.results(timeout):
                return result
        except WaitTimeout:
            raise JobTimeout(
                job_id=self.job_id, seconds=timeout or 0.0, status=self._safe_status()
            ) from None
        raise AssertionError("ResultWaiter ended without a result or a timeout")

    def _safe_status(self) -> str:
        try:
            return self.status()
        except redis.RedisError:
            return "unknown (Redis unreachable)"

    # -- cancelling -----------------------------------------------------------------------------
    def cancel(self, *, reason: str = "cancelled by request") -> CancelOutcome:
        """Stop the job wherever it is.

        Sets the cancel flag and publishes the job id (the worker asks for the flag before
        starting, hears the message while running, then interrupts only this prompt on its
        ComfyUI: ``worker.cancel_watch``) and broadcasts a Celery revoke without
        terminate (workers drop the queued message). A job still queued is also marked REVOKED at
        once, so waiters return without waiting for a worker to pick it up.
        """
        ctx = self._ctx
        before = self.status()
        if before in FINAL_STATUSES:
            return CancelOutcome(self.job_id, before, False, False, False)
        flag_set = request_cancel(ctx.client, ctx.settings.key_prefix, self.job_id, reason=reason)
        ctx.app.control.revoke(self.job_id)
        marked = False
        if before == "queued":
            ctx.app.backend.mark_as_revoked(self.job_id, reason=reason)
            marked = True
        return CancelOutcome(self.job_id, before, flag_set, True, marked)
