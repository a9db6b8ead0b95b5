"""Cancel requests pushed to a worker process instead of polled, one subscription per process.

Polling cost one EXISTS per running job every half second: the most frequent Redis command of
a farm after progress. Now ``tasks.control.request_cancel`` sets the job's flag *and* publishes
its id on ``<prefix>cancels``; ``CancelWatch`` keeps ONE pub/sub subscription to that channel
(a daemon thread) per worker process and a local set of the cancelled jobs it runs. A job

1. is registered (``watch``), then asks Redis once (EXISTS, or the job's own ``first_ask``: the
   submission ledger reads the flag with the job's entry in one MGET, ``worker.ledger``): that
   covers a cancel sent before it started, or before the registration;
2. from then on only looks at the local set — while the subscription is up.

No cancel may be lost, so while the subscription is down (Redis restarted, a failover, a
dropped socket) every job falls back to one EXISTS per ``interval``, and right after the
subscription is back every job it watches asks once more (a cancel published while nobody
listened is then found by its flag). A cancel is noticed at once while subscribed, within
``interval`` while not.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from comfyfarm.tasks.control import cancel_requested
from comfyfarm.tasks.keyspace import cancel_channel, cancel_key

log = logging.getLogger(__name__)

#: Seconds between the flag checks of a job while the subscription is down.
POLL_INTERVAL = 0.5
#: Seconds before subscribing again after the subscription failed.
RESUBSCRIBE_PAUSE = 1.0
#: Seconds one wait for a message may last (the thread notices ``close`` this often).
LISTEN_SLICE = 1.0


class CancelWatch:
    """The cancel requests of the jobs this process runs (see the module docstring)."""

    def __init__(
        self,
        rds: redis.Redis,
        prefix: str,
        *,
        interval: float = POLL_INTERVAL,
        resubscribe_pause: float = RESUBSCRIBE_PAUSE,
    ) -> None:
        self._rds, self._prefix = rds, prefix
        self._channel = cancel_channel(prefix)
        self._interval, self._pause = interval, resubscribe_pause
        self._lock = threading.Lock()
        self._watched: dict[str, int] = {}  # job id → how many checks of this process watch it
        self._cancelled: set[str] = set()  # watched jobs whose cancel arrived
        self._subscribed = threading.Event()  # set while the subscription is known to be up
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def subscribed(self) -> bool:
        return self._subscribed.is_set()

    def start(self) -> CancelWatch:
        """Subscribe, then start the thread that listens (once; later calls do nothing).

        The subscription is opened here, in the caller's thread: a pool process that starts
        its watch at warm-up has its subscription's connection open before its first job, and
        the client's pool keeps the connection warm-up opened for the jobs' own commands (the
        subscription takes an idle connection of the pool if there is one). If subscribing
        fails the thread tries again, as after any loss."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, args=(self._open(),), name="cancel-watch", daemon=True
                )
                self._thread.start()
        return self

    def close(self) -> None:
        self._closed.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=LISTEN_SLICE + 5)

    def check(self, job_id: str, *, first_ask: Callable[[], bool] | None = None) -> JobCancelCheck:
        """The cancel check of one job; ``close`` it when the job ends. ``first_ask`` reads the
        flag the first time instead of an EXISTS (it must read it from Redis, now)."""
        self.start()
        with self._lock:
            self._watched[job_id] = self._watched.get(job_id, 0) + 1
        return JobCancelCheck(self, job_id, first_ask=first_ask)

    def _unwatch(self, job_id: str) -> None:
        with self._lock:
            left = self._watched.get(job_id, 0) - 1
            if left > 0:
                self._watched[job_id] = left
            else:
                self._watched.pop(job_id, None)
                self._cancelled.discard(job_id)

    def _pushed(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._cancelled

    def _mark(self, job_ids: list[str]) -> None:
        with self._lock:
            self._cancelled.update(j for j in job_ids if j in self._watched)

    def _ask(self, job_id: str, read: Callable[[], bool] | None = None) -> bool:
        """The flag itself (one EXISTS, or ``read``); a Redis error reads as "not cancelled",
        asked again."""
        try:
            if read is not None:
                return read()
            return cancel_requested(self._rds, self._prefix, job_id)
        except redis.RedisError as exc:
            log.warning("could not check the cancel flag of job %s: %s", job_id, exc)
            return False

    def _open(self) -> Any:
        """A pub/sub subscribed to the cancel channel (its confirmation not read yet), or None
        if Redis could not be reached (the thread then tries again)."""
        pubsub: Any = None
        try:
            pubsub = self._rds.pubsub(ignore_subscribe_messages=False)
            pubsub.subscribe(self._channel)
            return pubsub
        except (redis.RedisError, OSError, ValueError) as exc:
            log.debug("cancel subscription failed (%s): polling until it is up", exc)
            if pubsub is not None:
                _close_quietly(pubsub)
            return None

    def _run(self, pubsub: Any) -> None:
        while not self._closed.is_set():
            if pubsub is None:
                pubsub = self._open()
            if pubsub is not None:
                try:
                    self._listen(pubsub)
                except (redis.RedisError, OSError, ValueError) as exc:
                    if self._subscribed.is_set():
                        log.warning("cancel subscription lost (%s): polling until it is back", exc)
                finally:
                    self._subscribed.clear()
                    _close_quietly(pubsub)
                    pubsub = None
            if self._closed.is_set():
                break
            self._closed.wait(self._pause)  # Redis is what we wait for: no event to await

    def _listen(self, pubsub: Any) -> None:
        while not self._closed.is_set():
            message = pubsub.get_message(timeout=LISTEN_SLICE)
            if message is None:
                continue
            if message.get("type") == "subscribe":
                # Ask first, then say subscribed: a job watched from then on asks once itself,
                # so no job is asked twice for the same moment.
                self._recheck()
                self._subscribed.set()
            elif message.get("type") == "message":
                data = message.get("data")
                job_id = data.decode() if isinstance(data, bytes) else str(data)
                self._mark([job_id])

    def _recheck(self) -> None:
        """Ask for every watched job once: a cancel published while we were not subscribed."""
        with self._lock:
            jobs = list(self._watched)
        if not jobs:
            return
        with self._rds.pipeline(transaction=False) as pipe:
            for job_id in jobs:
                pipe.exists(cancel_key(self._prefix, job_id))
            found = pipe.execute()
        self._mark([job_id for job_id, hit in zip(jobs, found, strict=True) if hit])


def _close_quietly(pubsub: Any) -> None:
    try:
        pubsub.close()
    except (redis.RedisError, OSError):
        pass


class JobCancelCheck:
    """``check()``: whether the cancel of one job was requested (see ``CancelWatch``).

    The first call asks Redis; later calls look at the pushed cancels while the subscription is
    up, and ask Redis at most once per ``interval`` while it is down. A "yes" is kept.
    """

    def __init__(
        self, watch: CancelWatch, job_id: str, *, first_ask: Callable[[], bool] | None = None
    ) -> None:
        self._watch, self.job_id = watch, job_id
        self._first_ask = first_ask
        self._asked = False
        self._next_ask = float("-inf")
        self._cancelled = False
        self._released = False

    def __call__(self) -> bool:
        if self._cancelled:
            return True
        watch = self._watch
        if watch._pushed(self.job_id):
            self._cancelled = True
            return True
        now = time.monotonic()
        if self._asked and (watch.subscribed or now < self._next_ask):
            return False
        read = None if self._asked else self._first_ask
        self._asked, self._next_ask = True, now + watch._interval
        self._cancelled = watch._ask(self.job_id, read)
        return self._cancelled

    def close(self) -> None:
        """The job ended: stop watching it (idempotent)."""
        if not self._released:
            self._released = True
            self._watch._unwatch(self.job_id)
