"""The broker's record of delivered, unacknowledged messages: read it, restore one entry early.

Redis has no acks; kombu emulates them. A message a worker fetches is written to the hash
``<prefix>unacked`` (delivery tag → ``[message, exchange, routing key]``) and to the sorted set
``<prefix>unacked_index`` (delivery tag → fetch time, the fetching host's clock); the ack deletes
both. kombu's own sweep (``QoS.restore_visible``) puts an entry back on its queue once it is older
than the visibility timeout, whether or not its worker still lives.

``UnackedMessages`` lets ``worker.takeover`` do the same for one entry, earlier: ``older_than``
lists tags fetched before a moment, ``payloads`` reads their messages, ``restore`` puts one back
exactly as kombu's sweep would (same queue and priority list, at the front, marked
``redelivered``) — through kombu's own channel, so queue names, priority steps and the key prefix
are kombu's.

``PlainPipelineQoS`` (installed by the worker, ``use_plain_pipelines``) writes and deletes an
entry in one plain pipeline instead of kombu's MULTI/EXEC: the same round trip, two commands
less per fetch and per ack. Nothing needs the isolation: an entry is only judged once it is
older than the takeover's grace or the visibility timeout, and ``restore`` WATCHes both keys.

``restore`` is one WATCH/MULTI transaction on both keys that first checks the entry is still
*the delivery that was judged*: same tag, same fetch time. An entry acked, restored by someone
else (another sweeper, kombu's sweep, a worker's shutdown) or fetched again since (a restored
message keeps its tag but gets a new fetch time) is left alone, so one delivery is restored at
most once however many sweepers race for it.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import redis
from kombu.connection import Connection
from kombu.transport import redis as kombu_redis

log = logging.getLogger(__name__)

#: kombu's key names (``Channel.unacked_key`` / ``unacked_index_key``), under the key prefix.
UNACKED = "unacked"
UNACKED_INDEX = "unacked_index"
#: Most entries one call looks at (a farm holds about one per pool process plus delayed retries).
MAX_ENTRIES = 1000


@dataclass(frozen=True)
class Delivery:
    """One unacknowledged delivery: its tag, when it was fetched (``time.time()`` of the
    fetching host), and the task id and name its message headers carry ("" if unreadable)."""

    tag: str
    fetched_at: float
    task_id: str = ""
    task_name: str = ""


class UnackedMessages:
    """The ``unacked`` hash and ``unacked_index`` set of one farm (``prefix``).

    ``rds``: our own client (keys are prefixed here). ``connect``: returns a kombu connection to
    the farm's broker (the app's ``connection_for_write``), opened on the first ``restore`` and
    again after a connection error.
    """

    def __init__(self, rds: redis.Redis, prefix: str, connect: Callable[[], Connection]) -> None:
        self._rds = rds
        self._hash = prefix + UNACKED
        self._index = prefix + UNACKED_INDEX
        self._connect = connect
        self._connection: Connection | None = None

    def older_than(self, moment: float, *, limit: int = MAX_ENTRIES) -> list[tuple[str, float]]:
        """``(tag, fetched_at)`` of the entries fetched before ``moment``, oldest first."""
        rows: list[tuple[bytes | str, float]] = self._rds.zrangebyscore(
            self._index, "-inf", f"({moment}", start=0, num=limit, withscores=True
        )  # type: ignore[assignment]
        return [(_text(tag), float(score)) for tag, score in rows]

    def payloads(self, entries: list[tuple[str, float]]) -> list[Delivery]:
        """The deliveries of ``entries`` that are still unacknowledged, with their headers."""
        if not entries:
            return []
        raw = self._rds.hmget(self._hash, [tag for tag, _ in entries])
        found = []
        for (tag, fetched_at), value in zip(entries, raw, strict=True):
            if value is not None:
                task_id, task_name = _headers(value)
                found.append(Delivery(tag, fetched_at, task_id, task_name))
        return found

    def restore(self, delivery: Delivery) -> bool:
        """Put ``delivery`` back on its queue if it is still unacknowledged *and* still the same
        fetch; True if this call restored it. Raises ``redis.RedisError`` (the channel is
        reopened next time)."""
        if self._connection is None:
            self._connection = self._connect()
        try:
            return _restore(self._connection.default_channel, self._index, delivery)
        except redis.RedisError:
            self.close()
            raise

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.release()  # type: ignore[no-untyped-call]
            except Exception as exc:  # closing a broken connection: nothing more to do
                log.debug("closing the takeover's broker connection: %s", exc)


def restore_held(channel: Any, tag: str) -> bool:
    """Put the delivery ``tag`` that this worker holds back on its queue, at the front, through
    the worker's own kombu ``channel`` (``worker.handback``); True if it was still unacknowledged.

    No fetch-time check: the caller holds the delivery, so the entry under its tag is its own
    fetch (unless a sweep already restored it and another worker fetched it again, which takes
    a heartbeat missed for the whole registry TTL; that copy then meets the job's lease)."""
    # A client of the channel's own pool: ``channel.client`` carries the consumer's BRPOP.
    with channel.conn_or_acquire() as client:
        return _restore(channel, "", Delivery(tag, 0.0), same_fetch=False, client=client)


def _restore(
    channel: Any, index_key: str, delivery: Delivery, *, same_fetch: bool = True, client: Any = None
) -> bool:
    """kombu's ``QoS.restore_by_tag``, plus (``same_fetch``) the check that the entry is the
    fetch we judged."""
    restored = False

    def transaction(pipe: Any) -> None:
        nonlocal restored
        restored = False
        # HGET and WATCH get kombu's key prefix from its client; ZSCORE is not on kombu's list
        # of prefixed commands, so it is given the full key.
        raw = pipe.hget(channel.unacked_key, delivery.tag)
        score = pipe.zscore(index_key, delivery.tag) if same_fetch else None
        pipe.multi()
        if raw is None or (same_fetch and (score is None or float(score) != delivery.fetched_at)):
            return  # acked, restored by someone else, or fetched again since
        pipe.zrem(channel.unacked_index_key, delivery.tag)
        pipe.hdel(channel.unacked_key, delivery.tag)
        message, exchange, routing_key = json.loads(_text(raw))
        channel._do_restore_message(message, exchange, routing_key, pipe, False)
        restored = True

    (client or channel.client).transaction(
        transaction, channel.unacked_key, channel.unacked_index_key
    )
    return restored


def _headers(raw: bytes | str) -> tuple[str, str]:
    """The Celery task id and name of a stored ``[message, exchange, routing key]``."""
    try:
        message = json.loads(_text(raw))[0]
        headers = message.get("headers") or {}
        return str(headers.get("id") or ""), str(headers.get("task") or "")
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return "", ""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class PlainPipelineQoS(kombu_redis.QoS):
    """kombu's Redis QoS whose own pipelines (an entry written at fetch: ZADD + HSET; deleted
    at ack: ZREM + HDEL) are plain ones (see the module docstring). A pipeline kombu hands in
    (its restore's transaction) is used as it is."""

    @contextlib.contextmanager
    def pipe_or_acquire(self, pipe: Any = None, client: Any = None) -> Iterator[Any]:
        if pipe:
            yield pipe
        else:
            with self.channel.conn_or_acquire(client) as acquired:
                yield acquired.pipeline(transaction=False)


def use_plain_pipelines() -> None:
    """Make every kombu Redis channel of this process (Sentinel's too) use PlainPipelineQoS."""
    kombu_redis.Channel.QoS = PlainPipelineQoS
