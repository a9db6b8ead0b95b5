"""Fetch a message and record it as unacknowledged in one atomic step: no job lost mid-fetch.

kombu's Redis transport fetches with ``BRPOP`` over the queue lists: the message leaves Redis at
once and is written to ``unacked`` (``QoS.append``) only after the worker has read the reply, one
event-loop turn later. A worker killed in between, or while the reply sits in its socket buffer,
takes the message with it: it is in no queue and not in ``unacked``, so neither the takeover nor
the visibility timeout can bring it back (celery/celery#7950, celery/kombu#305).

``install`` changes kombu's Redis channel (Sentinel's too, a subclass) so that a message only
ever leaves its queue inside a Lua script that records it in the same step:

- *fetch*: ``FETCH_SCRIPT`` pops the first message of the worker's queue lists, in kombu's order
  (priority steps × queues of ``_queue_cycle``, so priority and queue order are kept), and writes
  ``unacked`` (tag → ``[message, exchange, routing key]``) and ``unacked_index`` (tag → fetch
  time from the worker's clock) exactly as ``QoS.append`` would. It returns the message and
  whether more are waiting. Finding the queues empty after a token, it deletes their doorbells
  (tokens left by messages other fetches took), so tokens cannot pile up.
- *wait*: with nothing waiting, the channel ``BRPOP``s the doorbells of its queues
  (``tasks.doorbell``) for up to the poll (``COMFYFARM_FETCH_POLL_SECONDS``, 5 s: kombu's
  ``brpop_timeout``); a token or the timeout starts a fetch. Every message comfyfarm queues
  rings: producers after each chunk, a comfyfarm Celery app after each other publish
  (``tasks.doorbell.RingingAMQP``), and a message put back on its queue (kombu's restores, the
  takeover's) in the same transaction that puts it back (``_do_restore_message`` below). A
  message nobody rang for (a Celery app that is not ours) waits at most one poll. An idle
  worker thus costs one ``BRPOP`` per poll, not a ``BRPOP`` and a fetch every second.

Both commands are sent and read through kombu's own poller (``_brpop_start`` sends,
``_brpop_read`` reads when the socket is readable), so the event loop never blocks and kombu's
credit checks (``can_consume``), reconnects and health checks apply unchanged. ``QoS.append``
skips its Redis write for a message the script recorded (it keeps its in-memory record, used
to restore at shutdown). Queues consumed without acks (Celery's reply queues) need no record:
their lists are ``BRPOP``ped directly along with the doorbells, as kombu does.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from queue import Empty
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport.virtual import base as virtual
from kombu.utils import json as kombu_json
from redis.exceptions import NoScriptError, ResponseError

from comfyfarm.tasks.doorbell import MARK, bell_key

log = logging.getLogger(__name__)

#: KEYS: unacked hash, unacked index, the n queue lists in fetch order, then their doorbells.
#: ARGV: n, the fetch time, "1" to delete the doorbells if the lists are empty.
#: Returns nil, or {index of the list, message, tag or "", more waiting (0/1)}.
#: ``LMPOP`` (Redis 7, Valkey) pops from the first non-empty list: what ``BRPOP`` over the same
#: keys does, in one command; older servers get the same from one ``RPOP`` per list.
FETCH_SCRIPT = """
local n = tonumber(ARGV[1])
local lists = {}
for i = 1, n do lists[i] = KEYS[2 + i] end
local index, item
local lmpop = {'LMPOP', n}
for i = 1, n do lmpop[i + 2] = lists[i] end
lmpop[n + 3] = 'RIGHT'
local ok, popped = pcall(redis.call, unpack(lmpop))
if ok then
  if popped then
    item = popped[2][1]
    for i = 1, n do if lists[i] == popped[1] then index = i break end end
  end
else
  for i = 1, n do
    local found = redis.call('RPOP', lists[i])
    if found then index, item = i, found break end
  end
end
if not item then
  if ARGV[3] == '1' and #KEYS > n + 2 then redis.call('DEL', unpack(KEYS, n + 3)) end
  return nil
end
local tag = ''
local decoded, message = pcall(cjson.decode, item)
if decoded and type(message) == 'table' and type(message.properties) == 'table' then
  local properties = message.properties
  local info = properties.delivery_info
  if type(properties.delivery_tag) == 'string' and type(info) == 'table' then
    tag = properties.delivery_tag
    redis.call('ZADD', KEYS[2], ARGV[2], tag)
    redis.call('HSET', KEYS[1], tag, '[' .. item .. ', ' .. cjson.encode(info.exchange)
      .. ', ' .. cjson.encode(info.routing_key) .. ']')
  end
end
return {index, item, tag, redis.call('EXISTS', unpack(lists))}
"""
FETCH_SHA = hashlib.sha1(FETCH_SCRIPT.encode(), usedforsecurity=False).hexdigest()

_loads: Callable[[str], Any] = kombu_json.loads
_base_append: Callable[..., None] = virtual.QoS.append
_original_append: Callable[..., None] = kombu_redis.QoS.append
_original_basic_consume: Callable[..., Any] = kombu_redis.Channel.basic_consume
_original_restore_message: Callable[..., None] = kombu_redis.Channel._do_restore_message
_original_close: Callable[..., None] = kombu_redis.Channel.close
_ORIGINALS: dict[tuple[type, str], Any] = {
    (cls, name): getattr(cls, name)
    for cls, name in [
        (kombu_redis.Channel, "_brpop_start"),
        (kombu_redis.Channel, "_brpop_read"),
        (kombu_redis.Channel, "basic_consume"),
        (kombu_redis.Channel, "_do_restore_message"),
        (kombu_redis.Channel, "close"),
        (kombu_redis.QoS, "append"),
        (kombu_redis.Transport, "brpop_timeout"),
    ]
}
#: Seconds an idle worker waits on its doorbells before it looks in its queues anyway (the
#: default of ``COMFYFARM_FETCH_POLL_SECONDS``).
POLL_SECONDS = 5.0


def install(poll_seconds: float = POLL_SECONDS) -> None:
    """Make every kombu Redis channel of this process fetch with the script and wait up to
    ``poll_seconds`` on its doorbells (idempotent)."""
    replacements = [
        _brpop_start, _brpop_read, _basic_consume, _do_restore_message, _close, _append,
        poll_seconds,
    ]  # fmt: skip
    for (cls, name), replacement in zip(_ORIGINALS, replacements, strict=True):
        setattr(cls, name, replacement)


def uninstall() -> None:
    """Put kombu's own fetch back (tests)."""
    for (cls, name), original in _ORIGINALS.items():
        setattr(cls, name, original)


def _state(channel: Any) -> dict[str, Any]:
    """This module's per-channel state (kept in the channel's ``__dict__``)."""
    state: dict[str, Any] | None = channel.__dict__.get("_safe_fetch")
    if state is None:
        state = {
            "due": True,  # fetch next (at start, after a token or timeout, while more wait)
            "rung": True,  # woken by a token (or starting): clear the doorbells if all is empty
            "pending": None,  # "fetch" or "wait": the command whose reply is awaited
            "lists": [],  # unprefixed queue lists of the pending fetch, in order
            "bells": {},  # unprefixed doorbell key → queue, of the pending wait
            "plain": False,  # whether the pending wait pops queue lists too (no-ack queues)
            "recorded": set(),  # tags the script recorded and QoS.append has not seen yet
            "no_ack": set(),  # queues consumed without acknowledgements
        }
        channel.__dict__["_safe_fetch"] = state
    return state


def _basic_consume(self: Any, queue: str, *args: Any, **kwargs: Any) -> Any:
    no_ack = kwargs.get("no_ack", args[0] if args else False)
    (_state(self)["no_ack"].add if no_ack else _state(self)["no_ack"].discard)(queue)
    return _original_basic_consume(self, queue, *args, **kwargs)


def _brpop_start(self: Any, timeout: float | None = None) -> None:
    """Send the fetch script when a message may be waiting, else BRPOP the doorbells."""
    if timeout is None:
        timeout = self.brpop_timeout
    queues = self._queue_cycle.consume(len(self.active_queues))
    if not queues:
        return
    state = _state(self)
    acked = [queue for queue in queues if queue not in state["no_ack"]]
    prefix = self.global_keyprefix
    if acked and state["due"]:
        lists = [self._q_for_pri(queue, pri) for pri in self.priority_steps for queue in acked]
        bells = [bell_key(queue) for queue in acked]
        keys = [self.unacked_key, self.unacked_index_key, *lists, *bells]
        command = ["EVALSHA", FETCH_SHA, len(keys), *(prefix + key for key in keys)]
        command += [len(lists), repr(time.time()), "1" if state["rung"] else "0"]
        state["pending"], state["lists"] = "fetch", lists
    else:
        state["bells"] = {bell_key(queue): queue for queue in acked}
        plain = [self._q_for_pri(q, pri) for pri in self.priority_steps for q in queues
                 if q in state["no_ack"]]  # fmt: skip
        keys = [*state["bells"], *plain]
        command = ["BRPOP", *(prefix + key for key in keys), timeout or 0]
        state["pending"], state["plain"] = "wait", bool(plain)
    self._in_poll = self.client.connection
    self._brpop_sent_at = time.monotonic()
    self.client.connection.send_command(*command)


def _brpop_read(self: Any, **options: Any) -> bool:
    """Read the reply ``_brpop_start`` asked for; deliver a message or raise ``Empty``."""
    state = _state(self)
    try:
        pending = state["pending"]
        state["pending"] = None
        name = "EVALSHA" if pending == "fetch" else "BRPOP"
        try:
            reply = self.client.parse_response(self.client.connection, name, **options)
        except self.connection_errors:
            self.client.connection.disconnect()
            raise
        except NoScriptError:  # a new or restarted server, or a failover: load it, fetch again
            self.client.script_load(FETCH_SCRIPT)
            state["due"] = True
            raise Empty() from None
        except ResponseError as exc:  # e.g. scripts refused on a full server: wait, try again
            log.warning("fetching a message failed (trying again at the next poll): %s", exc)
            state["due"] = False
            raise Empty() from None
        if pending == "fetch":
            return _deliver_fetched(self, state, reply)
        return _after_wait(self, state, reply)
    finally:
        self._in_poll = None
        self._flush_brpop_reauth()


def _deliver_fetched(channel: Any, state: dict[str, Any], reply: Any) -> bool:
    if not reply:
        state["due"] = False
        raise Empty()
    index, item, tag, more = reply
    state["due"], state["rung"] = bool(more), True  # tokens may be left: clear them when empty
    if tag:
        state["recorded"].add(_text(tag))
    queue = state["lists"][int(index) - 1].rsplit(channel.sep, 1)[0]
    channel._queue_cycle.rotate(queue)
    channel.connection._deliver(_loads(_text(item)), queue)
    return True


def _after_wait(channel: Any, state: dict[str, Any], reply: Any) -> bool:
    """A token or the timeout: fetch next. A message of a queue without acks: deliver it."""
    if not reply:
        state["due"], state["rung"] = True, False
        raise Empty()
    key, item = reply
    key = _text(key)
    if key in state["bells"]:
        state["due"], state["rung"] = True, True
        raise Empty()
    queue = key.rsplit(channel.sep, 1)[0]
    channel._queue_cycle.rotate(queue)
    channel.connection._deliver(_loads(_text(item)), queue)
    return True


def _do_restore_message(
    self: Any, payload: Any, exchange: str, routing_key: str, pipe: Any, leftmost: bool = False
) -> None:
    """kombu's restore of one message to its queue (its sweep of the visibility timeout, its
    restore at shutdown, the takeover's), plus a token on the queue's doorbell in the same
    pipeline or transaction: an idle worker takes the message at once, not at its next poll."""
    _original_restore_message(self, payload, exchange, routing_key, pipe, leftmost)
    try:
        queues = self._lookup(exchange, routing_key)
    except Exception:  # kombu's restore above logged it: nothing was put back to ring for
        return
    for queue in queues:
        pipe.lpush(bell_key(queue), MARK)


def _close(self: Any) -> None:
    """kombu's close, without first waiting out a pending wait on the doorbells: kombu reads
    the reply of a pending ``BRPOP`` before it closes (it may carry a message), which would hold
    a worker's shutdown for up to the poll. A wait on doorbells alone carries at most a token,
    a hint: its connection is dropped instead (a token it took is lost; the message is not)."""
    state = self.__dict__.get("_safe_fetch")
    connection = self._in_poll
    if connection and state is not None and state["pending"] == "wait" and not state["plain"]:
        state["pending"] = None
        connection.disconnect()  # kombu's connection tells the channel and its poller
        self._in_poll = None
    _original_close(self)


def _append(self: Any, message: Any, delivery_tag: str) -> None:
    """kombu's ``QoS.append``, without the Redis write for a message the script recorded."""
    recorded: set[str] = _state(self.channel)["recorded"]
    if delivery_tag in recorded:
        recorded.discard(delivery_tag)
        _base_append(self, message, delivery_tag)
        return
    _original_append(self, message, delivery_tag)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
