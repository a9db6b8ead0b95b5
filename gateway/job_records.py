"""The gateway's own record of each job it accepted, and each tenant's job index.

The farm already keeps a job's queue record, Celery state and result; the gateway adds what the
contract needs and the farm has no field for:

======================================  =====================================================
``<prefix>gw:job:<job_id>``             JSON {tenant, created_at, metadata, workflow, queue,
                                        blobs}: the owner
                                        (another tenant gets 404), the creation time and the
                                        executed API-format graph (``GET …/workflow``); TTL =
                                        the farm's result retention + ``EXPIRED_GRACE`` (past
                                        the retention the job answers ``expired``, then 404)
``<prefix>gw:jobs:<tenant>``            sorted set job id → created_at: ``GET /jobs``, newest
                                        first; entries past the retention are trimmed on write
======================================  =====================================================
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from comfyfarm.gateway import jsonio

#: How long a job's record outlives its retention: meanwhile it answers status ``expired``
#: (its outputs and result are gone) rather than 404, so a late poller learns what happened.
EXPIRED_GRACE = 24 * 3600


@dataclass(frozen=True)
class JobRecord:
    job_id: str
    tenant: str
    created_at: float
    metadata: dict[str, str]
    workflow: dict[str, Any]
    queue: str = ""
    blobs: tuple[str, ...] = ()  # digests of the caller's blobs the job takes as input


def record_key(prefix: str, job_id: str) -> str:
    return f"{prefix}gw:job:{job_id}"


def index_key(prefix: str, tenant: str) -> str:
    return f"{prefix}gw:jobs:{tenant}"


async def save_records(
    client: aioredis.Redis, prefix: str, records: list[JobRecord], *, retention: float
) -> None:
    """Write ``records`` and index them, in one pipeline."""
    indexes: dict[str, dict[str, float]] = {}
    async with client.pipeline(transaction=False) as pipe:
        for record in records:
            body = {
                "tenant": record.tenant,
                "created_at": record.created_at,
                "metadata": record.metadata,
                "workflow": record.workflow,
                "queue": record.queue,
                "blobs": list(record.blobs),
            }
            pipe.set(record_key(prefix, record.job_id), jsonio.dumps(body),
                     ex=int(retention) + EXPIRED_GRACE)  # fmt: skip
            members = indexes.setdefault(index_key(prefix, record.tenant), {})
            members[record.job_id] = record.created_at
        for key, scored in indexes.items():
            pipe.zadd(key, scored)
            pipe.zremrangebyscore(key, "-inf", time.time() - retention - EXPIRED_GRACE)
            pipe.expire(key, int(retention) + EXPIRED_GRACE)
        await pipe.execute()


def parse_record(job_id: str, raw: Any) -> JobRecord | None:
    if raw is None:
        return None
    try:
        body = jsonio.loads(raw)
        return JobRecord(
            job_id=job_id,
            tenant=str(body["tenant"]),
            created_at=float(body["created_at"]),
            metadata={str(k): str(v) for k, v in dict(body.get("metadata") or {}).items()},
            workflow=dict(body.get("workflow") or {}),
            queue=str(body.get("queue") or ""),
            blobs=tuple(str(d) for d in body.get("blobs") or ()),
        )
    except (ValueError, KeyError, TypeError):
        return None


async def load_record(
    client: aioredis.Redis, prefix: str, job_id: str, tenant: str
) -> JobRecord | None:
    """The record if it exists and belongs to ``tenant`` (None otherwise: the caller says 404)."""
    record = parse_record(job_id, await client.get(record_key(prefix, job_id)))
    if record is None or record.tenant != tenant:
        return None
    return record


async def page_ids(
    client: aioredis.Redis,
    prefix: str,
    tenant: str,
    *,
    before: tuple[float, str] | None,
    count: int,
) -> list[tuple[str, float]]:
    """Up to ``count`` (job id, created_at) of ``tenant``, newest first, strictly after the
    position ``before`` (the last item of the previous page)."""
    index = index_key(prefix, tenant)
    top: float | str = "+inf" if before is None else before[0]
    # Entries with the cursor's exact score may sit on either side of it: over-fetch and skip.
    raw: list[tuple[Any, float]] = await client.zrevrangebyscore(
        index, top, "-inf", start=0, num=count + 64, withscores=True
    )  # type: ignore[assignment,unused-ignore]
    found: list[tuple[str, float]] = []
    for member, score in raw:
        job_id = member.decode() if isinstance(member, bytes) else str(member)
        if before is not None and score == before[0] and job_id >= before[1]:
            continue
        found.append((job_id, float(score)))
        if len(found) == count:
            break
    return found
