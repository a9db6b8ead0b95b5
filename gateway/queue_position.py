"""``queue_position`` of a queued job: how many jobs a worker of its queue will take before it,
counting every job waiting on that queue — sent by any gateway, the CLI or a Python program
(``Farm.submit``) — in the order the workers take them (0: it is next).

That order is Celery's: a queue is one Redis list per priority (``tasks.routing.queue_keys``);
producers push on the left, workers pop on the right, the most urgent list first. So the jobs
ahead of a job are every job in a more urgent list plus those to its right in its own list. A
Lua script walks the lists in that order and returns the task id of each message (found in its
headers, where kombu puts it after the base64 body; the message is decoded as JSON only if the
plain search fails) — job ids only, not megabytes of prompts — for the first ``MAX_CHECKED``
messages, and the total. Messages of canceled jobs stay in the list until a worker drops them,
so they are not counted (one MGET of their cancel flags).

Each gateway process takes that snapshot at most once per ``REFRESH_SECONDS`` per queue and
answers every position asked in between from it (a thousand streams of queued jobs cost one
script run a second). What the number means, precisely:

- a job found in the snapshot: the jobs ahead of it then, canceled ones excluded (a job sent
  later with a higher priority moves ahead of it, as it will be taken first);
- a job farther back than ``MAX_CHECKED``: ``MAX_CHECKED`` (a lower bound);
- a queued job that is not in the list although it was sent well before the snapshot: a worker
  has taken it and not started it yet (prefetched, or waiting in its ComfyUI's queue): 0;
- a job sent while the snapshot was read: behind every job in it.

Positions are per queue: a worker that also consumes other queues (its own, a model's) may take
their jobs in between.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from comfyfarm.gateway.job_records import JobRecord
from comfyfarm.tasks.keyspace import cancel_key
from comfyfarm.tasks.routing import queue_keys

MAX_CHECKED = 1000
REFRESH_SECONDS = 1.0
#: A job sent this long before a snapshot began is in it unless a worker took it (a publish
#: takes milliseconds; this is the slack for a slow one).
PUBLISH_GRACE = 5.0

# KEYS: one queue's priority lists, most urgent first. ARGV[1]: how many ids to return at most.
# Returns {total messages, id of each of the first ARGV[1] messages in pop order ("" if none)}.
_WAITING_IDS = """
local limit = tonumber(ARGV[1])
local ids = {}
local total = 0
for _, key in ipairs(KEYS) do
  local length = redis.call('LLEN', key)
  total = total + length
  local wanted = math.min(length, limit - #ids)
  if wanted > 0 then
    local items = redis.call('LRANGE', key, -wanted, -1)
    for index = #items, 1, -1 do
      local message = items[index]
      local id
      local headers = string.find(message, '"headers": {', 1, true)
      if headers then
        id = string.match(message, '"id": "([0-9a-fA-F-]+)"', headers)
      end
      if not id then
        local ok, decoded = pcall(cjson.decode, message)
        if ok and type(decoded) == 'table' and type(decoded['headers']) == 'table' then
          id = decoded['headers']['id']
        end
      end
      ids[#ids + 1] = type(id) == 'string' and id or ''
    end
  end
end
return {total, ids}
"""


@dataclass(frozen=True)
class Snapshot:
    """One queue's waiting jobs as read at ``read_at`` (wall clock, when the read began)."""

    read_at: float
    ahead: dict[str, int] = field(default_factory=dict)  # job id → jobs ahead of it
    waiting: int = 0  # jobs waiting in all (canceled ones among the checked excluded)
    complete: bool = True  # every message was checked (the queue is not past MAX_CHECKED)


class QueuePositions:
    """Per queue: the latest snapshot of its waiting jobs, in the order workers take them."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._script = client.register_script(_WAITING_IDS)
        self._snapshots: dict[str, tuple[float, Snapshot]] = {}  # queue → (monotonic, snapshot)
        self._locks: dict[str, asyncio.Lock] = {}

    async def position(self, record: JobRecord) -> int | None:
        if not record.queue:
            return None
        snapshot = await self._snapshot(record.queue)
        found = snapshot.ahead.get(record.job_id)
        if found is not None:
            return found
        if not snapshot.complete:
            return MAX_CHECKED
        if record.created_at < snapshot.read_at - PUBLISH_GRACE:
            return 0  # taken by a worker, not started yet
        return snapshot.waiting  # sent while the snapshot was read: behind them all

    async def _snapshot(self, queue: str) -> Snapshot:
        taken, snapshot = self._snapshots.get(queue, (float("-inf"), Snapshot(0.0)))
        if time.monotonic() - taken < REFRESH_SECONDS:
            return snapshot
        lock = self._locks.setdefault(queue, asyncio.Lock())
        async with lock:
            taken, snapshot = self._snapshots.get(queue, (float("-inf"), Snapshot(0.0)))
            if time.monotonic() - taken < REFRESH_SECONDS:
                return snapshot
            started = time.monotonic()
            snapshot = await self.read(queue)
            self._snapshots[queue] = (started, snapshot)
        return snapshot

    async def read(self, queue: str) -> Snapshot:
        """A fresh snapshot of ``queue`` (two round trips: the script, the cancel flags)."""
        read_at = time.time()
        keys = [key for _, key in sorted(queue_keys(self._prefix, queue).items(), reverse=True)]
        total, raw_ids = await self._script(keys=keys, args=[MAX_CHECKED])
        ids = [_text(raw) for raw in raw_ids]
        flags: list[Any] = []
        named = [job_id for job_id in ids if job_id]
        if named:
            flags = await self._client.mget([cancel_key(self._prefix, i) for i in named])
        canceled = {job_id for job_id, flag in zip(named, flags, strict=True) if flag is not None}
        ahead: dict[str, int] = {}
        count = 0
        for job_id in ids:
            if job_id in canceled:
                continue
            if job_id:
                ahead.setdefault(job_id, count)  # a redelivered duplicate keeps its first place
            count += 1
        complete = int(total) <= len(ids)
        waiting = count + max(0, int(total) - len(ids))
        return Snapshot(read_at, ahead, waiting, complete)


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw
