"""Blob garbage collection: a blob is freed once nothing holds it any more.

Blobs are per tenant and shared by every asset of that tenant over the same bytes, and a queued
job that takes an asset as input needs the bytes until a worker has fetched them. So each blob
has a set of holders in Redis, ``<prefix>gw:blob-refs:<tenant>:<hex>`` (sorted set: holder →
until when it holds, ``inf`` for an asset):

- ``asset:<id>``: an asset record over the blob, from its creation until it is deleted;
- ``job:<id>``: a job given the blob as input, until a gateway sees it finish (at the latest,
  the farm's result retention after its submission);
- ``legacy``: the blob existed before its holders were counted (an upload from an older
  gateway): never freed.

Deleting an asset drops its hold; when no live hold remains the blob is deleted at once, else it
is tried again when the last job hold ends (``<prefix>gw:blob-gc``, swept by every gateway).

Uploads racing a collection: a new holder is added *before* the upload looks for the blob
(``BlobWriter.commit``), and a collection claims the blob (``<prefix>gw:blob-gc-lock:…``) only
while it has no live holder, atomically. So either the new hold comes first and the blob is not
collected, or the claim comes first and the uploader waits for that collection to finish and
then stores the bytes again.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

import redis.asyncio as aioredis

LOCK_SECONDS = 60
WAIT_STEP = 0.05
SWEEP_BATCH = 100
LEGACY = "legacy"

# KEYS: refs, lock. ARGV: now, lock seconds. Claims the blob for collection when no hold is
# live and no collection is under way: 1 claimed, 0 not.
_CLAIM = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
if redis.call('ZCARD', KEYS[1]) > 0 then return 0 end
redis.call('SET', KEYS[2], '1', 'EX', ARGV[2])
return 1
"""
# KEYS: refs. ARGV: holder, until. Adds a hold; returns whether the key existed before.
_HOLD = """
local existed = redis.call('EXISTS', KEYS[1])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return existed
"""


def refs_key(prefix: str, tenant: str, digest: str) -> str:
    return f"{prefix}gw:blob-refs:{tenant}:{digest.partition(':')[2]}"


def lock_key(prefix: str, tenant: str, digest: str) -> str:
    return f"{prefix}gw:blob-gc-lock:{tenant}:{digest.partition(':')[2]}"


def due_key(prefix: str) -> str:
    return f"{prefix}gw:blob-gc"


class BlobRefs:
    """Holds on one farm's blobs, and their collection. ``delete_blob(tenant, digest)``
    removes the bytes (synchronous: it runs in a thread)."""

    def __init__(
        self, client: aioredis.Redis, prefix: str, delete_blob: Callable[[str, str], None]
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._delete_blob = delete_blob
        self._claim = client.register_script(_CLAIM)
        self._hold = client.register_script(_HOLD)

    async def hold(self, tenant: str, digest: str, holder: str, until: float = math.inf) -> bool:
        """Add ``holder``; returns whether the blob had holders counted before. Waits for a
        collection of the blob under way to finish (so the caller stores the bytes anew)."""
        key = refs_key(self._prefix, tenant, digest)
        existed = await self._hold(keys=[key], args=[holder, _score(until)])
        lock = lock_key(self._prefix, tenant, digest)
        deadline = time.monotonic() + LOCK_SECONDS
        while await self._client.exists(lock) and time.monotonic() < deadline:
            await asyncio.sleep(WAIT_STEP)  # rare: only while this very blob is being deleted
        return bool(existed)

    async def mark_legacy(self, tenant: str, digest: str) -> None:
        """The blob was there before its holders were counted: never collect it."""
        await self._client.zadd(refs_key(self._prefix, tenant, digest), {LEGACY: "+inf"})

    async def release(self, tenant: str, digest: str, holder: str) -> bool:
        """Drop ``holder`` (again: nothing happens); the blob is deleted now if no live hold
        remains (True), else tried again when the last job hold ends."""
        key = refs_key(self._prefix, tenant, digest)
        now = time.time()
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.zrem(key, holder)
            pipe.zremrangebyscore(key, "-inf", f"({now}")
            pipe.zrange(key, -1, -1, withscores=True)
            removed, _, last = await pipe.execute()
        if not removed:
            return False  # released before, or never counted (then others may hold it too)
        if last:
            until = float(last[0][1])
            if math.isfinite(until):
                await self._client.zadd(due_key(self._prefix), {f"{tenant}:{digest}": until})
            return False
        return await self.collect(tenant, digest)

    async def collect(self, tenant: str, digest: str) -> bool:
        """Delete the blob if nothing holds it and no other collection is under way."""
        key = refs_key(self._prefix, tenant, digest)
        lock = lock_key(self._prefix, tenant, digest)
        if not await self._claim(keys=[key, lock], args=[time.time(), LOCK_SECONDS]):
            return False
        try:
            await asyncio.to_thread(self._delete_blob, tenant, digest)
        finally:
            await self._client.delete(lock)
        return True

    async def sweep(self) -> int:
        """Collect the blobs whose last job hold has ended; returns how many were deleted."""
        key = due_key(self._prefix)
        due = await self._client.zrangebyscore(key, "-inf", time.time(), 0, SWEEP_BATCH)
        freed = 0
        for raw in due:
            member = raw.decode() if isinstance(raw, bytes) else str(raw)
            if not await self._client.zrem(key, member):
                continue  # another gateway took it
            tenant, _, digest = member.partition(":")
            freed += await self.collect(tenant, digest)
        return freed


def _score(until: float) -> str:
    return "+inf" if math.isinf(until) else repr(until)
