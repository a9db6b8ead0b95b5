"""``queue_position`` of a queued job: how many jobs the gateways sent to the same queue before it
are still waiting (0: it is next).

Celery's Redis queue is a list of opaque messages, so the position cannot be read from it
cheaply. The gateways keep their own ordered set per queue (``job_records.queued_key``) and clean
it lazily: when a position is asked for, the jobs ahead are checked (one MGET of their Celery
states) and those no longer pending are dropped from the set. At most ``MAX_CHECKED`` jobs ahead
are looked at; a job farther back reports ``MAX_CHECKED``. Jobs enqueued by other producers
(the CLI, Python programs) are not counted, and priorities are not taken into account.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from comfyfarm.gateway.job_records import JobRecord, queued_key
from comfyfarm.tasks.keyspace import celery_result_key

MAX_CHECKED = 1000


async def queue_position(
    client: aioredis.Redis, results: aioredis.Redis, prefix: str, record: JobRecord
) -> int | None:
    if not record.queue:
        return None
    key = queued_key(prefix, record.queue)
    ahead = await client.zrangebyscore(key, "-inf", record.created_at, start=0, num=MAX_CHECKED)
    ids = [raw.decode() if isinstance(raw, bytes) else str(raw) for raw in ahead]
    ids = [job_id for job_id in ids if job_id != record.job_id]
    if not ids:
        return 0
    metas = await results.mget([celery_result_key(prefix, job_id) for job_id in ids])
    gone = [job_id for job_id, meta in zip(ids, metas, strict=True) if meta is not None]
    if gone:
        await client.zrem(key, *gone)
    return len(ids) - len(gone)


async def left_queue(client: aioredis.Redis, prefix: str, record: JobRecord) -> None:
    """Drop a job that is no longer queued from its queue's set."""
    if record.queue:
        await client.zrem(queued_key(prefix, record.queue), record.job_id)
