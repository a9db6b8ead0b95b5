"""Blob garbage collection through a real gateway (file:// storage), real workers and the
official client: a blob lives while an asset or an unfinished job holds it, and goes with the
last of them. The ordering rules against racing uploads, on real Valkey."""

from __future__ import annotations

import asyncio
import io
import math
import time
import uuid
from pathlib import Path

import redis.asyncio as aioredis
from farm_kit import png_bytes, wait_until
from test_gateway_events import png_size
from workflows_kit import load_invert_save

from comfyfarm.gateway.blob_refs import LEGACY, BlobRefs, due_key, lock_key, refs_key


def blob_path(out_dir: Path, tenant: str, digest: str) -> Path:
    hexdigest = digest.partition(":")[2]
    return out_dir / "blobs" / tenant / hexdigest[:2] / hexdigest


def test_a_blob_goes_with_the_last_asset_over_it(sdk, out_dir: Path) -> None:
    """Two assets over the same bytes: deleting one keeps the blob, deleting both frees it;
    the same bytes uploaded again are new (201, created_new) and download whole."""
    client = sdk("acme")
    data = png_bytes(9, 9)
    first = client._low.post_assets(io.BytesIO(data), "image/png", "a.png")
    second = client._low.post_assets(io.BytesIO(data), "image/png", "b.png")
    path = blob_path(out_dir, "acme", first.hash)

    client._low.raw_request("DELETE", f"/assets/{first.id}")
    kept = path.is_file() and client._low.head_asset_by_hash(first.hash)
    client._low.raw_request("DELETE", f"/assets/{second.id}")
    freed = not path.exists() and not client._low.head_asset_by_hash(first.hash)
    again = client._low.post_assets(io.BytesIO(data), "image/png", "c.png")

    assert first.hash == second.hash and kept and freed
    assert again.created_new is True
    with client._low.get_asset_content(again.id) as response:
        assert response.read() == data


def test_a_queued_job_keeps_its_input_until_it_finishes(
    sdk, start_sim, workers, out_dir: Path
) -> None:
    """An asset deleted while a job that takes it waits in the queue: the job still runs on
    its bytes, and the blob is freed once the job has finished."""
    client = sdk("acme")
    photo = client._low.post_assets(io.BytesIO(png_bytes(37, 21)), "image/png", "photo.png")
    job = client.submit(client.workflows.from_json(load_invert_save("photo.png")))
    client._low.raw_request("DELETE", f"/assets/{photo.id}")
    path = blob_path(out_dir, "acme", photo.hash)
    held = path.is_file()

    workers.start(start_sim("--step-ms", "1", "--load-ms", "0"))
    done = job.result()

    assert held
    assert done.status == "succeeded"
    assert png_size(done.get_outputs("3")[0].to_bytes()) == (37, 21)
    client.jobs.get(job.id)  # a gateway seeing the job finished releases its hold
    wait_until(lambda: not path.exists(), what="the finished job's input blob to be freed")


def run_refs(redis_url: str, scenario):  # type: ignore[no-untyped-def]
    """Run ``scenario(refs, client, prefix, deleted)`` on a BlobRefs over real Valkey."""

    async def main():  # type: ignore[no-untyped-def]
        client = aioredis.Redis.from_url(redis_url)
        prefix = f"gc-{uuid.uuid4().hex[:8]}:"
        deleted: list[str] = []
        refs = BlobRefs(client, prefix, lambda tenant, digest: deleted.append(digest))
        try:
            return await scenario(refs, client, prefix, deleted)
        finally:
            await client.aclose()

    return asyncio.run(main())


DIGEST = "blake3:" + "ab" * 32


def test_a_hold_before_the_claim_keeps_the_blob(redis_url: str) -> None:
    """A new holder added while the last one is released: nothing is collected; releasing a
    holder twice, or one never counted, collects nothing either."""

    async def scenario(refs, client, prefix, deleted):  # type: ignore[no-untyped-def]
        await refs.hold("acme", DIGEST, "asset:1")
        await refs.hold("acme", DIGEST, "asset:2")
        first = await refs.release("acme", DIGEST, "asset:1")
        twice = await refs.release("acme", DIGEST, "asset:1")
        never = await refs.release("acme", DIGEST, "asset:9")
        last = await refs.release("acme", DIGEST, "asset:2")
        return first, twice, never, last, deleted

    first, twice, never, last, deleted = run_refs(redis_url, scenario)

    assert (first, twice, never, last) == (False, False, False, True)
    assert deleted == [DIGEST]


def test_an_upload_during_a_collection_waits_for_it(redis_url: str) -> None:
    """A hold taken while the blob is being collected returns only after the collection is
    done (so the uploader stores the bytes again)."""

    async def scenario(refs, client, prefix, deleted):  # type: ignore[no-untyped-def]
        await client.set(lock_key(prefix, "acme", DIGEST), "1", ex=60)  # a collection under way
        waiting = asyncio.create_task(refs.hold("acme", DIGEST, "asset:3"))
        await asyncio.sleep(0.2)  # lets the hold run into the lock (no event to await here)
        early = waiting.done()
        await client.delete(lock_key(prefix, "acme", DIGEST))
        await waiting
        collected = await refs.collect("acme", DIGEST)
        return early, collected

    early, collected = run_refs(redis_url, scenario)

    assert early is False
    assert collected is False  # the new hold keeps it


def test_job_holds_end_by_time_and_legacy_blobs_stay(redis_url: str) -> None:
    """A blob held only by a job hold that has ended is swept; a legacy blob never is."""

    async def scenario(refs, client, prefix, deleted):  # type: ignore[no-untyped-def]
        legacy = "blake3:" + "cd" * 32
        await refs.hold("acme", DIGEST, "asset:1")
        await refs.hold("acme", DIGEST, "job:1", until=time.time() + 3600)
        await refs.release("acme", DIGEST, "asset:1")  # the job still holds it: scheduled
        kept, early = list(deleted), await refs.sweep()
        await refs.hold("acme", legacy, "asset:2")
        await refs.mark_legacy("acme", legacy)
        await refs.release("acme", legacy, "asset:2")
        past = time.time() - 1  # the hour has passed
        await client.zadd(refs_key(prefix, "acme", DIGEST), {"job:1": past})
        await client.zadd(due_key(prefix), {f"acme:{DIGEST}": past})
        swept = await refs.sweep()
        score = await client.zscore(refs_key(prefix, "acme", legacy), LEGACY)
        return kept, early, swept, list(deleted), score

    kept, early, swept, deleted, score = run_refs(redis_url, scenario)

    assert kept == [] and early == 0
    assert swept == 1 and deleted == [DIGEST]
    assert score == math.inf
