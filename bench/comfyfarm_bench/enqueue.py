"""``comfyfarm bench enqueue``: ``producer.bench_enqueue`` on a given broker or an embedded one."""

from __future__ import annotations

from typing import Any

from comfyfarm.services import RedisServer
from comfyfarm_bench.enqueue_bench import EnqueueBench, bench_enqueue

WARMUP_JOBS = 10  # bench_enqueue submits these untimed, to connect and declare the queue


def run_enqueue(
    count: int, *, broker_url: str | None = None, chunk_size: int = 500
) -> EnqueueBench:
    """Time ``submit_many`` of ``count`` jobs (the first ``WARMUP_JOBS`` untimed). Without
    ``broker_url`` an embedded Valkey is started for the run."""
    if count <= WARMUP_JOBS:
        raise ValueError(f"count must be more than {WARMUP_JOBS}")
    if broker_url:
        return bench_enqueue(broker_url, count=count, chunk_size=chunk_size)
    with RedisServer() as server:
        return bench_enqueue(server.url, count=count, chunk_size=chunk_size)


def enqueue_dict(outcome: EnqueueBench) -> dict[str, Any]:
    return {
        "bench": "enqueue",
        "jobs": outcome.jobs,
        "seconds": round(outcome.seconds, 4),
        "jobs_per_second": round(outcome.rate, 1),
        "prompt_bytes": outcome.prompt_bytes,
        "queued_after": outcome.queued_after,
    }
