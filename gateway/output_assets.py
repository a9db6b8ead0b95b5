"""Job outputs as assets: ``<prefix>gw:asset:<id>`` → JSON ``OutputAsset``.

Uploaded assets are records over blobs in the store (``comfyfarm.storage.blobs``); a job's
outputs are already stored by the worker, so the gateway only adds a small Redis record per
output: the owner, the output's storage URI (or the inline value of a text output), size,
content type, name, producing job and hash. The record is written the first time the gateway
shows the job with that output (``register_outputs``; while it runs, too); its id is stable
(``job_view.output_asset_id``), so every gateway names it the same, and it lives as long as
the job.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import redis.asyncio as aioredis

from comfyfarm.gateway.job_view import blake3_of, output_asset_id, value_bytes
from comfyfarm.tasks.models import OutputRecord


@dataclass(frozen=True)
class OutputAsset:
    asset_id: str
    tenant: str
    uri: str | None  # None: ``text`` holds the content
    size_bytes: int
    content_type: str
    file_path: str | None
    created_at: float
    expires_at: float | None
    hash: str | None = None
    job_id: str | None = None
    text: str | None = None
    tags: tuple[str, ...] = ()


def asset_key(prefix: str, asset_id: str) -> str:
    return f"{prefix}gw:asset:{asset_id}"


def dump(record: OutputAsset) -> str:
    body = asdict(record)
    body["tags"] = list(record.tags)
    return json.dumps(body)


def parse(raw: Any) -> OutputAsset | None:
    if raw is None:
        return None
    try:
        body = json.loads(raw)
        body["tags"] = tuple(body.get("tags") or ())
        return OutputAsset(**body)
    except (ValueError, TypeError):
        return None


async def load_output_asset(
    client: aioredis.Redis, prefix: str, asset_id: str, tenant: str
) -> OutputAsset | None:
    """The asset if it exists and belongs to ``tenant`` (None: the caller answers 404)."""
    record = parse(await client.get(asset_key(prefix, asset_id)))
    if record is None or record.tenant != tenant:
        return None
    return record


async def save_output_asset(client: aioredis.Redis, prefix: str, record: OutputAsset, *,
                     only_new: bool = False) -> bool:  # fmt: skip
    ttl = None if record.expires_at is None else max(1, int(record.expires_at - time.time()))
    done = await client.set(asset_key(prefix, record.asset_id), dump(record), ex=ttl, nx=only_new)
    return bool(done)


async def register_outputs(
    client: aioredis.Redis,
    prefix: str,
    tenant: str,
    job_id: str,
    outputs: Sequence[OutputRecord],
    *,
    expires_at: float,
    created_at: float | None = None,
) -> None:
    """An asset record per stored output of a job, finished or still running (kept if
    already there)."""
    if not outputs:
        return
    ttl = max(1, int(expires_at - time.time()))
    async with client.pipeline(transaction=False) as pipe:
        for item in outputs:
            text = None if item.uri is not None else value_bytes(item).decode("utf-8", "replace")
            record = OutputAsset(
                asset_id=output_asset_id(job_id, item),
                tenant=tenant,
                uri=item.uri,
                size_bytes=item.bytes if item.uri is not None else len((text or "").encode()),
                content_type=item.mime or "application/octet-stream",
                file_path=item.filename or None,
                created_at=created_at or time.time(),
                expires_at=expires_at,
                hash=blake3_of(item.hash),
                job_id=job_id,
                text=text,
            )
            pipe.set(asset_key(prefix, record.asset_id), dump(record), ex=ttl, nx=True)
        await pipe.execute()
