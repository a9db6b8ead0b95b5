"""Where the soak finds a job it still waits for, on a real Redis with the farm's real queues."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from comfyfarm_bench.soak_whereabouts import GoneWatch, queue_keys, whereabouts

from comfyfarm.producer import Farm
from comfyfarm.tasks.keyspace import lease_key
from comfyfarm.tasks.settings import Settings
from comfyfarm.workflows import prepare_jobs


@pytest.fixture
def farm(redis_url: str, tmp_path: Path) -> Iterator[Farm]:
    settings = Settings(
        broker_url=redis_url,
        key_prefix=f"wh-{uuid.uuid4().hex[:8]}:",
        storage_url=(tmp_path / "out").as_uri(),
    )
    with Farm(settings) as farm:
        yield farm


def _submit(farm: Farm, count: int) -> list[str]:
    jobs = prepare_jobs("empty_invert", schema=None, sweeps=[f"color=1..{count}"])
    return [handle.job_id for handle in farm.submit_many(jobs)]


def test_a_job_is_queued_unacked_leased_or_nowhere(farm: Farm) -> None:
    """Submitted (no worker): queued. Its message moved to ``unacked``: unacked. A lease:
    leased. Message gone from the queue, no lease: nowhere."""
    prefix = farm.settings.key_prefix
    queued, held, running, gone = _submit(farm, 4)
    rds = farm.redis
    keys = [key for key in queue_keys(rds, prefix) if rds.llen(key)]
    assert keys, "the farm's queue list was not found"
    messages = {json.loads(m)["headers"]["id"]: m for key in keys for m in rds.lrange(key, 0, -1)}
    for job_id in (held, running, gone):
        for key in keys:
            rds.lrem(key, 0, messages[job_id])
    rds.hset(f"{prefix}unacked", "tag-1", json.dumps([json.loads(messages[held]), "", "q"]))
    rds.set(lease_key(prefix, running), "w0:abc", ex=30)

    places = whereabouts(rds, prefix, [queued, held, running, gone])
    assert places == {queued: "queued", held: "unacked", running: "leased", gone: "nowhere"}


def test_the_soak_stops_waiting_only_for_jobs_that_stay_nowhere(farm: Farm) -> None:
    """A job still queued keeps the soak waiting; once only jobs seen nowhere for the whole
    patience are left, it stops."""
    prefix = farm.settings.key_prefix
    queued, gone = _submit(farm, 2)
    for key in queue_keys(farm.redis, prefix):
        for message in farm.redis.lrange(key, 0, -1):
            if gone in message:
                farm.redis.lrem(key, 0, message)
    watch = GoneWatch(farm.redis, prefix, patience=0.0)
    assert not watch.all_gone([queued, gone], time.monotonic())
    assert gone in watch.nowhere_since and queued not in watch.nowhere_since
    later = GoneWatch(farm.redis, prefix, patience=0.0)
    assert later.all_gone([gone], time.monotonic())
