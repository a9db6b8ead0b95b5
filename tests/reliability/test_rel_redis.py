"""Guarantee 6: Redis restarted while jobs are queued and running loses none of them."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

from farm_kit import WorkerFactory, executions
from rel_kit import running_on, text2image

from comfyfarm.producer import Farm
from comfyfarm.services import RedisServer
from comfyfarm.tasks.models import JobResult
from comfyfarm.tasks.settings import Settings


def test_redis_restart_loses_no_job_and_everyone_reconnects(
    workers: WorkerFactory, start_sim, out_dir: Path, reaper
) -> None:
    """Redis (AOF on) stopped and started under a worker and waiting producers: every queued
    and running job finishes once and every waiter gets its result."""
    sim = start_sim("--step-ms", "30", "--load-ms", "0")
    with RedisServer(appendonly=True) as redis_server:
        prefix = f"rel-{uuid.uuid4().hex[:12]}:"
        settings = Settings(
            broker_url=redis_server.url, storage_url=out_dir.as_uri(), key_prefix=prefix,
            max_job_seconds=6, visibility_timeout=8, restore_interval=0.5, lease_seconds=1.5,
            max_retry_delay=4,
        )  # fmt: skip
        own = type(workers)(redis_server.url, prefix, settings.storage_url)
        try:
            own.start(sim, "w0", args=("--depth", "1"))
            with Farm(settings) as farm:
                # No cache hits; ~2 s each: a job shows "running" once it has run for 1 s (the
                # worker's progress settle time), and Redis must restart while it still runs.
                jobs = [farm.submit(text2image(sim, steps=60 + i)) for i in range(6)]
                results: dict[str, JobResult] = {}
                waiters = [
                    threading.Thread(target=lambda j=j: results.update({j.job_id: j.wait(60)}))
                    for j in jobs
                ]
                for waiter in waiters:
                    waiter.start()
                running_on(jobs[0])

                redis_server.restart()

                for waiter in waiters:
                    waiter.join(70)
        finally:
            own.stop_all(reaper)
    assert sorted(results) == sorted(j.job_id for j in jobs)
    assert {r.status for r in results.values()} == {"succeeded"}, [
        r.error for r in results.values()
    ]
    counts = {job_id: executions(sim, job_id) for job_id in results}
    assert set(counts.values()) == {1}, counts
