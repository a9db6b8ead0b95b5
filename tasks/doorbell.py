"""Doorbells: one Redis list per queue that tells idle workers "a message is waiting".

Workers no longer block on the queue lists themselves (a blocking pop takes the message out of
Redis before the worker has recorded it; see ``worker.safe_fetch``). They block on the doorbells
of their queues instead, and on a token (or after ``COMFYFARM_FETCH_POLL_SECONDS`` without one)
take a message with an atomic script. Every message comfyfarm puts on a queue rings:

- ``Farm.submit``/``send`` (``producer.publish``): one ring per chunk, after the chunk is in Redis;
- any other publish through a comfyfarm Celery app (``RingingAMQP``: job retries, watch copies,
  webhook deliveries, a bare ``apply_async`` on ``farm.app``): one token after each message;
- a message put back on its queue (kombu's restores, the takeover): a token in the same
  transaction (``worker.safe_fetch``).

The poll is the net for what nobody rang for (a publish by a Celery app that is not ours, a
ring lost to a Redis error): such a message waits at most one poll.

``<prefix>bell:<queue>`` (prefix: kombu's ``global_keyprefix``, the farm's key prefix) holds one
token per message rung for. Tokens are a hint, never a count: the fetch script deletes the
doorbells of queues it finds empty, and ``ring`` trims a doorbell that passes ``BELL_LIMIT``
(one more command, only while a backlog outgrows it), so they cannot pile up.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Callable, Iterator
from typing import Any

import redis
from celery.app.amqp import AMQP
from kombu.utils.objects import cached_property

log = logging.getLogger(__name__)

#: Most tokens one doorbell keeps: more than the workers that can be idle on one queue at once.
BELL_LIMIT = 1024
MARK = "1"  # a token: its value means nothing

#: Set while a caller publishes a batch it rings for itself (``deferred_rings``).
_deferred: contextvars.ContextVar[bool] = contextvars.ContextVar("deferred_rings", default=False)


def bell_key(queue: str) -> str:
    """The doorbell of ``queue``, without the key prefix (kombu's client adds it)."""
    return f"bell:{queue}"


def ring(client: redis.Redis, prefix: str, counts: dict[str, int]) -> None:
    """Push a token per message onto the doorbell of each queue in ``counts`` (one round trip,
    one command per queue); trim a doorbell that grew past ``BELL_LIMIT``."""
    rung = {queue: min(count, BELL_LIMIT) for queue, count in counts.items() if count > 0}
    if not rung:
        return
    with client.pipeline(transaction=False) as pipe:
        for queue, count in rung.items():
            pipe.lpush(prefix + bell_key(queue), *[MARK] * count)
        lengths: list[Any] = pipe.execute()
    long = [queue for queue, length in zip(rung, lengths, strict=True) if length > BELL_LIMIT]
    if long:
        with client.pipeline(transaction=False) as pipe:
            for queue in long:
                pipe.ltrim(prefix + bell_key(queue), 0, BELL_LIMIT - 1)
            pipe.execute()


def ring_on(producer: Any, queue: str) -> None:
    """Push one token onto ``queue``'s doorbell through a kombu producer's Redis channel (its
    client adds the key prefix): for messages sent with Celery's ``send_task``. Best effort: a
    ring that fails costs latency only."""
    client = getattr(producer.channel, "client", None)
    if client is None:  # not a Redis transport: there are no doorbells
        return
    try:
        length = int(client.lpush(bell_key(queue), MARK))
        if length > BELL_LIMIT:  # a queue nobody consumes; RPOP: kombu's client prefixes it
            client.rpop(bell_key(queue), length - BELL_LIMIT)
    except redis.RedisError as exc:
        log.warning("ringing the doorbell of queue %s failed (workers find the message within "
                    "their poll): %s", queue, exc)  # fmt: skip


@contextlib.contextmanager
def deferred_rings() -> Iterator[None]:
    """Publishes inside this block do not ring one by one: the caller rings for them all once
    they are in Redis (a kombu publish batch is written only when the batch ends, so a ring per
    message would wake workers before their messages exist)."""
    token = _deferred.set(True)
    try:
        yield
    finally:
        _deferred.reset(token)


class RingingAMQP(AMQP):  # type: ignore[misc]
    """Celery's AMQP helper whose task sender rings the doorbell of the message's queue after
    each publish (``make_app`` uses it), so every task message a comfyfarm app sends wakes an
    idle worker at once, whoever sends it: Celery's ``retry``, ``send_task``, ``apply_async``.

    Only queues the app knows (``app.amqp.queues``, which Celery's router fills) are rung: a
    message routed by exchange to a queue the app never named has no doorbell to ring (the poll
    finds it)."""

    @cached_property
    def send_task_message(self) -> Callable[..., Any]:
        send: Callable[..., Any] = self._create_task_sender()

        def send_and_ring(producer: Any, name: str, message: Any, **options: Any) -> Any:
            sent = send(producer, name, message, **options)
            queue = self._queue_name(options)
            if queue is not None and not _deferred.get():
                ring_on(producer, queue)
            return sent

        return send_and_ring

    def _queue_name(self, options: dict[str, Any]) -> str | None:
        """The queue Celery's sender puts the message on (what ``send_task_message`` does with
        its ``queue`` and ``exchange`` arguments), or None if it is not one of the app's."""
        queue = options.get("queue")
        if queue is None:
            if options.get("exchange") is not None:
                return None
            queue = self.default_queue
        name = queue if isinstance(queue, str) else getattr(queue, "name", None)
        return name if isinstance(name, str) and name in self.queues else None
