"""Doorbells: one Redis list per queue that tells idle workers "a message is waiting".

Workers no longer block on the queue lists themselves (a blocking pop takes the message out of
Redis before the worker has recorded it; see ``worker.safe_fetch``). They block on the doorbells
of their queues instead, and on a token (or after a second without one) take a message with an
atomic script. A producer that rings after pushing its messages wakes an idle worker at once;
a message pushed without a ring (a kombu restore, a plain Celery ``apply_async``, our takeover)
is still taken within the worker's one-second poll.

``<prefix>bell:<queue>`` (prefix: kombu's ``global_keyprefix``, the farm's key prefix) holds one
token per message rung for. Tokens are a hint, never a count: the fetch script deletes the
doorbells of queues it finds empty, and ``ring`` trims a doorbell that passes ``BELL_LIMIT``
(one more command, only while a backlog outgrows it), so they cannot pile up.
"""

from __future__ import annotations

import logging
from typing import Any

import redis

log = logging.getLogger(__name__)

#: Most tokens one doorbell keeps: more than the workers that can be idle on one queue at once.
BELL_LIMIT = 1024
MARK = "1"  # a token: its value means nothing


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
        client.lpush(bell_key(queue), MARK)
    except redis.RedisError as exc:
        log.warning("ringing the doorbell of queue %s failed: %s", queue, exc)
