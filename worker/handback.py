"""Handing back the messages a worker holds but cannot start, so another worker runs them now.

A worker holds more messages than its pool runs. Celery reserves a message whose retry or watch
is due later (an ETA) on top of its prefetch, and takes one more in its place; when the ETA comes
and every pool process is busy, the message waits for one (Celery's pool semaphore). Acks are late,
so all of them stay unacknowledged, in this worker's heartbeat (``WorkerInfo.holding``), and the
takeover leaves them alone: they wait for *this* worker. That is right while the worker works.
It is not when the worker cannot start them:

- its ComfyUI (or output store) is unhealthy: the health gate stops consuming, but what the worker
  already holds would still run here, on a ComfyUI that is down;
- its ComfyUI is stuck: it answers ``/system_stats`` but a prompt makes no progress (a hang), so
  every pool process waits on it (up to the stall timeout, 2 minutes at the defaults) and a
  message behind them waits as long, job taken over from a dead worker or not.

``HandBack`` (run by the health gate from the consumer's event loop, ``worker.service``) puts
such messages back on their queue, at the front, at once:

- ``unstarted``: every message waiting for its ETA or for a pool process (while not consuming);
- ``stalled``: the messages that waited for a pool process longer than ``pool_wait`` seconds
  (while consuming; a message the pool takes within that is left alone, so a busy healthy worker
  keeps its pipeline).

Each is first taken out of this worker (its ETA timer cancelled, or its turn for a pool process
given up: a message already handed to the pool is left alone), then restored in one
WATCH/MULTI transaction (``unacked.restore_held``, as kombu's own restore does: same queue and
priority, marked redelivered, its ``unacked`` entry removed), then dropped from kombu's
in-memory record (so it leaves the heartbeat and frees its prefetch credit) and from Celery's,
never acked. Exactly once is kept as for any redelivery: the next worker claims the job's lease
and finds in the submission ledger where its prompt went, if anywhere. Handing a message back
does not make this worker take it again: while it does not consume it fetches nothing, and while
it does, the credit freed is the one its ETA added (or it would not have waited).

This reads Celery's and kombu's internals (``Request._eta_timer_entry``, the waiters of the
worker's pool semaphore, ``QoS._delivered``); kombu's minor version is pinned for ``safe_fetch``
already, and a pool or request without them is left alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

import redis
from celery.worker import state as worker_state
from kombu.transport.virtual import base as virtual

from comfyfarm.worker.unacked import restore_held

log = logging.getLogger(__name__)

#: Seconds a due message may wait for a pool process before it is handed back (while consuming).
POOL_WAIT_SECONDS = 5.0


class HandBack:
    """Hands back what a consumer holds but cannot start (see the module docstring).

    ``clock``: monotonic seconds (tests pass their own). Celery's waiters carry no times, so how
    long a message has waited for a pool process is counted from when a call first saw it.
    """

    def __init__(self, *, pool_wait: float = POOL_WAIT_SECONDS, clock: Any = time.monotonic):
        self.pool_wait = pool_wait
        self._clock = clock
        self._waiting_since: dict[str, float] = {}  # task id -> first seen waiting
        self.handed_back = 0

    def unstarted(self, consumer: Any, reason: str) -> list[str]:
        """Hand back every message waiting for its ETA or for a pool process; the task ids."""
        done = [req.id for req in _scheduled() if self._hand_back_scheduled(consumer, req, reason)]
        waiters = _waiters(consumer)
        for req, waiter in _waiting(waiters):
            if self._hand_back_waiting(req, waiter, waiters, reason):
                done.append(req.id)
        self._waiting_since.clear()
        return done

    def stalled(self, consumer: Any) -> list[str]:
        """Hand back the messages that waited for a pool process longer than ``pool_wait``."""
        waiters = _waiters(consumer)
        now = self._clock()
        waiting = _waiting(waiters)
        seen = {req.id for req, _ in waiting}
        self._waiting_since = {k: v for k, v in self._waiting_since.items() if k in seen}
        done = []
        for req, waiter in waiting:
            since = self._waiting_since.setdefault(req.id, now)
            if now - since < self.pool_wait:
                continue
            reason = f"no pool process free for {now - since:.0f} s (ComfyUI stuck or busy)"
            if self._hand_back_waiting(req, waiter, waiters, reason):
                self._waiting_since.pop(req.id, None)
                done.append(req.id)
        return done

    def _hand_back_scheduled(self, consumer: Any, req: Any, reason: str) -> bool:
        entry = getattr(req, "_eta_timer_entry", None)
        if entry is None or getattr(entry, "canceled", False) or req.acknowledged:
            return False
        if not self._restore(req, reason):
            return False
        consumer.timer.cancel(entry)
        consumer.qos.decrement_eventually()  # the credit its ETA added (Celery's apply_eta_task)
        self._forget(req)
        return True

    def _hand_back_waiting(self, req: Any, waiter: Any, waiters: Any, reason: str) -> bool:
        if req.acknowledged or waiter not in waiters or not self._restore(req, reason):
            return False
        waiters.remove(waiter)  # never handed to the pool now
        self._forget(req)
        return True

    def _restore(self, req: Any, reason: str) -> bool:
        message = req.message
        try:
            restored = restore_held(message.channel, str(message.delivery_tag))
        except redis.RedisError as exc:  # Redis away: keep it, the next call tries again
            log.warning("could not hand back job %s: %s", req.id, exc)
            return False
        if restored:
            self.handed_back += 1
            log.warning("job %s: handed back to its queue, not started here: %s", req.id, reason)
        return restored

    @staticmethod
    def _forget(req: Any) -> None:
        """Drop the message from kombu's record (heartbeat, prefetch credit; no Redis command:
        its entry is gone already) and the request from Celery's (never acked or run)."""
        message = req.message
        qos = getattr(message.channel, "qos", None)
        if qos is not None:
            virtual.QoS.ack(qos, message.delivery_tag)  # type: ignore[no-untyped-call]
        req.acknowledged = True
        worker_state.task_ready(req)


def _scheduled() -> list[Any]:
    """The requests waiting for their ETA (Celery's timer holds them, no pool process yet)."""
    return list(worker_state.scheduled_requests)


def _waiters(consumer: Any) -> Any:
    """The worker's pool semaphore's queue of ``(callback, args, kwargs)``: the requests due to
    run that wait for a pool process (Celery hands one to the pool as one finishes), or None."""
    semaphore = getattr(getattr(consumer, "controller", None), "semaphore", None)
    return getattr(semaphore, "_waiting", None)


def _waiting(waiters: Iterable[Any] | None) -> list[tuple[Any, Any]]:
    """``(request, waiter)`` of every reserved request waiting in ``waiters``."""
    if not waiters:
        return []
    reserved = set(worker_state.reserved_requests)
    found = []
    for waiter in list(waiters):
        args: tuple[Any, ...] = waiter[1] if isinstance(waiter, tuple) and len(waiter) == 3 else ()
        req = args[0] if len(args) == 1 else None
        if req is not None and req in reserved and req not in worker_state.active_requests:
            found.append((req, waiter))
    return found
