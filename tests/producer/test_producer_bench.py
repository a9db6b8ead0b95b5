"""The enqueue benchmark runs end to end and cleans up after itself."""

from __future__ import annotations

import redis
from comfyfarm_bench.enqueue_bench import bench_enqueue


def test_bench_enqueue_counts_and_cleans_up(redis_url: str) -> None:
    """All benchmark jobs are enqueued, the rate is reported, and no keys are left behind."""
    client = redis.Redis.from_url(redis_url)
    before = set(client.scan_iter(match="comfyfarm-bench-*"))
    outcome = bench_enqueue(redis_url, count=1000, chunk_size=250)
    assert outcome.jobs == 990 and outcome.queued_after == 1000
    assert outcome.rate > 0 and "jobs/s" in str(outcome)
    assert set(client.scan_iter(match="comfyfarm-bench-*")) == before
    client.close()
