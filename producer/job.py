"""Job: a handle on one submitted job — status, progress, result, wait, cancel.

``wait`` subscribes to the job's Celery result channel (every state change, PROGRESS included, is
published there) and also re-reads the state every couple of seconds, so a missed message or a
reconnect costs at most that long. It returns a JobResult for succeeded, failed and cancelled
jobs alike and raises ``JobTimeout`` when time runs out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from celery import Celery
from redis.client import PubSub

from producer.errors import JobTimeout
from producer.outcome import (
    FINAL_STATUSES,
    JobState,
    parse_meta,
    progress_from,
    read_state,
    result_from,
    status_word,
)
from tasks.control import request_cancel
from tasks.keyspace import celery_result_key
from tasks.models import JobProgress, JobResult, JobSpec
from tasks.settings import Settings

log = logging.getLogger(__name__)

POLL_SECONDS = 2.0
RECONNECT_PAUSE = 1.0

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

    def __init__(self, ctx: JobContext, job_id: str, *, spec: JobSpec | None = None) -> None:
        self._ctx = ctx
        self.job_id = job_id
        self.spec = spec

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
        deadline = None if timeout is None else time.monotonic() + timeout

        def remaining() -> float:
            if deadline is None:
                return POLL_SECONDS
            left = deadline - time.monotonic()
            if left <= 0:
                raise JobTimeout(
                    job_id=self.job_id, seconds=timeout or 0.0, status=self._safe_status()
                )
            return left

        channel = celery_result_key(self._ctx.settings.key_prefix, self.job_id)
        last: JobProgress | None = None
        pubsub: PubSub | None = None
        state: JobState | None = None
        polled = 0.0
        try:
            while True:
                try:
                    if pubsub is None:
                        pubsub = self._ctx.results.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
                        pubsub.subscribe(channel)
                        state, polled = self._state(), time.monotonic()  # nothing missed
                    if state is not None:
                        result = self._finished(state)
                        if result is not None:
                            return result
                        progress = progress_from(state)
                        if progress is not None and progress != last:
                            last = progress
                            if on_progress is not None:
                                on_progress(progress)
                    message = pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=min(remaining(), POLL_SECONDS)
                    )
                    state = self._from_message(message)
                    if state is None and time.monotonic() - polled >= POLL_SECONDS:
                        state, polled = self._state(), time.monotonic()
                except (redis.ConnectionError, redis.TimeoutError) as exc:
                    log.warning("job %s: Redis unreachable (%s); retrying", self.job_id, exc)
                    if pubsub is not None:
                        _close_quietly(pubsub)
                    pubsub, state = None, None
                    time.sleep(min(RECONNECT_PAUSE, remaining()))
        finally:
            if pubsub is not None:
                _close_quietly(pubsub)

    def _finished(self, state: JobState) -> JobResult | None:
        if not state.ready:
            return None
        return result_from(self._ctx.client, self._ctx.settings.key_prefix, state)

    def _from_message(self, message: dict[str, Any] | None) -> JobState | None:
        if not message or message.get("type") != "message":
            return None
        meta = parse_meta(message.get("data"))
        if meta is None:
            return None
        return JobState(self.job_id, meta, submitted=True, cancel_requested=False)

    def _safe_status(self) -> str:
        try:
            return self.status()
        except redis.RedisError:
            return "unknown (Redis unreachable)"

    # -- cancelling -----------------------------------------------------------------------------
    def cancel(self, *, reason: str = "cancelled by request") -> CancelOutcome:
        """Stop the job wherever it is.

        Sets the cancel flag (the worker checks it before starting and while running, then
        interrupts only this prompt on its ComfyUI) and broadcasts a Celery revoke without
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


def _close_quietly(pubsub: PubSub) -> None:
    try:
        pubsub.close()
    except redis.RedisError:
        pass
