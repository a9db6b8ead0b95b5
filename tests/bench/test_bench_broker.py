"""`comfyfarm bench broker`: the broker's cost per job, read from a real Valkey's counters."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
import redis
from comfyfarm_bench.broker import run_broker_cost, wait_until_warm

from comfyfarm.tasks.registry import register_worker


def test_broker_cost_counts_commands_bytes_and_cpu_per_job(tmp_path: Path) -> None:
    """A small real run: every job finishes; commands, bytes and CPU per job are positive and the
    ceiling is one core's worth of that CPU."""
    cost = run_broker_cost(jobs=10, instances=1, job_ms=5, idle_seconds=0.5, workdir=tmp_path)
    assert cost.jobs == 10
    assert cost.commands_per_job > 0 and cost.bytes_in_per_job > 0 and cost.cpu_ms_per_job > 0
    assert "publish" in cost.top_commands_per_job
    assert abs(cost.ceiling_jobs_per_second - 1000 / cost.cpu_ms_per_job) < 1


def test_the_farm_is_counted_only_once_its_workers_are_registered_and_connected(
    redis_url: str,
) -> None:
    """Counting starts once every worker is in the registry and no connection has been opened
    for the quiet period (pool processes open theirs after the worker says it is ready)."""
    prefix = f"warm-{uuid.uuid4().hex[:8]}:"
    with redis.Redis.from_url(redis_url) as client:
        with pytest.raises(TimeoutError, match="0/1 workers"):
            wait_until_warm(client, prefix, workers=1, quiet=0.2, timeout=0.5)
        register_worker(client, prefix, "w0", {"queues": []})
        started = time.monotonic()
        with redis.Redis.from_url(redis_url) as other:
            other.ping()  # a connection opened: the quiet period starts again

        wait_until_warm(client, prefix, workers=1, quiet=0.5, timeout=10)

        assert time.monotonic() - started >= 0.5
