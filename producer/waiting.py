"""Following many jobs at once over one Redis subscription.

``ResultWaiter`` subscribes to the Celery result channel of every job it follows (each state
change, PROGRESS included, is published there) on ONE pubsub connection, and re-reads the state of
every job still pending (one MGET per chunk) right after subscribing (so after every reconnect)
and every ``POLL_SECONDS``, so a message missed while subscribed costs at most that long. Five
seconds, not two: on a live subscription nothing is missed, and a waiting producer is a steady
cost to Redis (one MGET per chunk per poll, for hours of jobs). Ten thousand jobs cost one
thread and two connections, not a thread and a connection each. ``Job.wait`` is the one-job case.

Results come in finishing order, as JobResults for succeeded, failed and cancelled jobs alike;
when time runs out with jobs still pending, ``WaitTimeout`` names them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import redis
from redis.client import PubSub

from comfyfarm.producer.errors import WaitTimeout
from comfyfarm.producer.outcome import JobState, parse_meta, progress_from, result_from
from comfyfarm.tasks.keyspace import celery_result_key
from comfyfarm.tasks.models import JobProgress, JobResult

log = logging.getLogger(__name__)

POLL_SECONDS = 5.0
RECONNECT_PAUSE = 1.0
CHUNK = 500  # channels per SUBSCRIBE, keys per MGET

#: Called with (job id, its newest progress) whenever a followed job reports a new one.
ProgressListener = Callable[[str, JobProgress], None]


class ResultWaiter:
    """Follows ``job_ids`` of one farm (``client``: our Redis, ``results``: the result backend)."""

    def __init__(
        self,
        client: redis.Redis,
        results: redis.Redis,
        prefix: str,
        job_ids: Iterable[str],
        *,
        on_progress: ProgressListener | None = None,
    ) -> None:
        self._client = client
        self._results = results
        self._prefix = prefix
        self._on_progress = on_progress
        self._channels = {celery_result_key(prefix, job_id): job_id for job_id in job_ids}
        self._pending = dict.fromkeys(self._channels.values())  # ordered, unique
        self._last_progress: dict[str, JobProgress] = {}

    @property
    def pending(self) -> list[str]:
        """Ids of the jobs not finished yet, in the order they were given."""
        return list(self._pending)

    def results(self, timeout: float | None) -> Iterator[JobResult]:
        """Yield each job's JobResult as it finishes; ``timeout`` (seconds, None = no limit)
        bounds the whole wait. Redis outages are ridden out (reconnecting every second)."""
        deadline = None if timeout is None else time.monotonic() + timeout

        def remaining() -> float:
            if deadline is None:
                return POLL_SECONDS
            left = deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeout(pending=self.pending, seconds=timeout or 0.0)
            return left

        pubsub: PubSub | None = None
        polled = 0.0
        try:
            while self._pending:
                try:
                    if pubsub is None:
                        pubsub = self._subscribe()
                        polled = float("-inf")  # read every state now: nothing missed
                    if time.monotonic() - polled >= POLL_SECONDS:
                        polled = time.monotonic()
                        yield from self._poll()
                        if not self._pending:
                            return
                    message = pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=min(remaining(), POLL_SECONDS)
                    )
                    result = self._on_message(message)
                    if result is not None:
                        yield result
                except (redis.ConnectionError, redis.TimeoutError) as exc:
                    log.warning("Redis unreachable while waiting for jobs (%s); retrying", exc)
                    if pubsub is not None:
                        _close_quietly(pubsub)
                    pubsub = None
                    time.sleep(min(RECONNECT_PAUSE, remaining()))
        finally:
            if pubsub is not None:
                _close_quietly(pubsub)

    # -- the two sources: the channel and the stored state ------------------------------------
    def _subscribe(self) -> PubSub:
        pubsub: PubSub = self._results.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call,unused-ignore]
        channels = [celery_result_key(self._prefix, job_id) for job_id in self._pending]
        for start in range(0, len(channels), CHUNK):
            pubsub.subscribe(*channels[start : start + CHUNK])
        return pubsub

    def _poll(self) -> Iterator[JobResult]:
        ids = list(self._pending)
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            raws = self._results.mget([celery_result_key(self._prefix, i) for i in chunk])
            for job_id, raw in zip(chunk, raws, strict=True):
                result = self._on_state(job_id, parse_meta(raw))
                if result is not None:
                    yield result

    def _on_message(self, message: dict[str, Any] | None) -> JobResult | None:
        if not message or message.get("type") != "message":
            return None
        channel = message.get("channel")
        if isinstance(channel, bytes):
            channel = channel.decode()
        job_id = self._channels.get(str(channel))
        if job_id is None or job_id not in self._pending:
            return None
        return self._on_state(job_id, parse_meta(message.get("data")))

    def _on_state(self, job_id: str, meta: dict[str, Any] | None) -> JobResult | None:
        """The JobResult if ``meta`` says the job finished (it is then no longer pending);
        otherwise tell the listener about new progress."""
        if meta is None:
            return None
        state = JobState(job_id, meta, submitted=True, cancel_requested=False)
        result = result_from(self._client, self._prefix, state)
        if result is not None:
            del self._pending[job_id]
            self._last_progress.pop(job_id, None)
            return result
        progress = progress_from(state)
        if progress is not None and progress != self._last_progress.get(job_id):
            self._last_progress[job_id] = progress
            if self._on_progress is not None:
                self._on_progress(job_id, progress)
        return None


def _close_quietly(pubsub: PubSub) -> None:
    try:
        pubsub.close()
    except redis.RedisError:
        pass
