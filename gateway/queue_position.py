"""``queue_position`` of a queued job: how many jobs the gateways sent to the same queue before it
are still waiting (0: it is next).

Celery's Redis queue is a list of opaque messages, so the position cannot be read from it
cheaply. The gateways keep their own ordered set per queue (``job_records.queued_key``). Each
gateway process reads the head of that set at most once per ``REFRESH_SECONDS`` per queue —
the first ``MAX_CHECKED`` entries, and one MGET of their Celery states — drops the jobs that
left the queue (started, finished, canceled) from the set, and answers every position asked in
between from that snapshot, so a thousand streams of queued jobs cost one read a second, not a
thousand. A job farther back than ``MAX_CHECKED`` reports ``MAX_CHECKED``. Jobs enqueued by
other producers (the CLI, Python programs) are not counted, nor are priorities.
"""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis

from comfyfarm.gateway.job_records import JobRecord, queued_key
from comfyfarm.tasks.keyspace import celery_result_key

MAX_CHECKED = 1000
REFRESH_SECONDS = 1.0


class QueuePositions:
    """Per queue: the ids still waiting at the head of the gateways' set, in order."""

    def __init__(self, client: aioredis.Redis, results: aioredis.Redis, prefix: str) -> None:
        self._client = client
        self._results = results
        self._prefix = prefix
        self._snapshots: dict[str, tuple[float, dict[str, int]]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def position(self, record: JobRecord) -> int | None:
        if not record.queue:
            return None
        waiting = await self._snapshot(record.queue)
        found = waiting.get(record.job_id)
        return found if found is not None else len(waiting)  # not seen yet: behind them all

    async def left(self, record: JobRecord) -> None:
        """Drop a job that is no longer queued from its queue's set."""
        if record.queue:
            await self._client.zrem(queued_key(self._prefix, record.queue), record.job_id)

    async def _snapshot(self, queue: str) -> dict[str, int]:
        read_at, waiting = self._snapshots.get(queue, (float("-inf"), {}))
        if time.monotonic() - read_at < REFRESH_SECONDS:
            return waiting
        lock = self._locks.setdefault(queue, asyncio.Lock())
        async with lock:
            read_at, waiting = self._snapshots.get(queue, (float("-inf"), {}))
            if time.monotonic() - read_at < REFRESH_SECONDS:
                return waiting
            waiting = await self._read(queue)
            self._snapshots[queue] = (time.monotonic(), waiting)
        return waiting

    async def _read(self, queue: str) -> dict[str, int]:
        key = queued_key(self._prefix, queue)
        head = await self._client.zrange(key, 0, MAX_CHECKED - 1)
        ids = [raw.decode() if isinstance(raw, bytes) else str(raw) for raw in head]
        if not ids:
            return {}
        metas = await self._results.mget([celery_result_key(self._prefix, i) for i in ids])
        gone = [job_id for job_id, meta in zip(ids, metas, strict=True) if meta is not None]
        if gone:
            await self._client.zrem(key, *gone)
        still = [job_id for job_id, meta in zip(ids, metas, strict=True) if meta is None]
        return {job_id: index for index, job_id in enumerate(still)}
