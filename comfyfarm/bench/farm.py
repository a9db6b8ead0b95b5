"""Mode ``farm``: producer → Redis → workers → storage, as deployed, on the benchmark's fleet.

Starts a fresh embedded Valkey, one worker subprocess per simulator and a ``file://`` store in
``workdir``; then (timed) ``Farm.submit_many`` hands in every job at once and waiter threads
(a few per instance, spread over several ``Farm`` objects: see ``WAITS_PER_FARM``) call
``Job.wait`` for each job. A job's ``submitted_at`` is just before ``submit_many`` (with
``serial``: before its own ``submit``), ``done_at`` when ``wait`` returned its result.

Besides the client-side record, ``extra`` holds the workers' memory (idle after start-up, and
the peak while running) and the workers' own time per job (``run_job`` start to result built);
each timing keeps that span, so the report can split idle gaps (``comfyfarm.bench.phases``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from comfyfarm.bench.cpu import CpuUse
from comfyfarm.bench.memory import MemorySampler
from comfyfarm.bench.record import JobTiming, ModeRun
from comfyfarm.bench.timeline import Spread
from comfyfarm.bench.workers import WorkerPool
from comfyfarm.services import RedisServer
from producer import Farm, Job, JobTimeout
from tasks.settings import Settings
from workflows import PreparedJob


def farm_environment(broker_url: str, store: Path) -> dict[str, str]:
    """The process environment of workers (and settings of the producer) for one run."""
    env = dict(os.environ)
    env.update(
        COMFYFARM_BROKER_URL=broker_url,
        COMFYFARM_RESULT_BACKEND="",  # = the broker
        COMFYFARM_STORAGE_URL=store.as_uri(),
        COMFYFARM_KEY_PREFIX=f"bench-{uuid.uuid4().hex[:8]}:",
    )
    return env


# Each Job.wait holds one pooled Redis connection for its pubsub and borrows another to read the
# state; redis-py caps a client's pool at 100 connections and Job.wait turns "Too many
# connections" into a 1 s retry. So waiting threads are spread over several Farms, this many each.
WAITS_PER_FARM = 32


def run_farm(
    urls: list[str],
    jobs: list[PreparedJob],
    workdir: Path,
    *,
    serial: bool = False,
    timeout: float = 600.0,
) -> ModeRun:
    """Start broker and workers, run ``jobs`` through the farm, stop everything again."""
    instances = len(urls)
    # Jobs finish roughly in submission order, at most `instances` at a time (plus what workers
    # prefetched): a few waiters per instance are already waiting when a result is published.
    waiters = instances if serial else min(len(jobs), 16 + 4 * instances)
    with RedisServer() as redis, contextlib.ExitStack() as stack:
        env = farm_environment(redis.url, workdir / "store")
        workers = stack.enter_context(WorkerPool(urls, env))
        idle = workers.memory()
        settings = Settings.from_env(env)
        farms = [stack.enter_context(Farm(settings)) for _ in range(-(-waiters // WAITS_PER_FARM))]
        for farm in farms:
            farm.redis.ping()
        farms[0].send([])  # producer connection and queue declaration outside the timing
        with MemorySampler(workers.pids) as sampler, CpuUse() as cpu:
            record = ModeRun("farm", started_at=time.time(), requested=len(jobs))
            deadline = time.monotonic() + timeout
            if serial:
                _run_serial(farms, jobs, waiters, record, deadline)
            else:
                _run_burst(farms, jobs, waiters, record, deadline)
            record.close()
    record.extra["cpu"] = cpu.to_dict()
    peak = sampler.peak or idle
    record.extra["worker_memory"] = {"idle": idle.to_dict(), "peak": peak.to_dict()}
    runs = [job.worker_seconds for job in record.done if job.worker_seconds is not None]
    record.extra["worker_run_ms"] = Spread.of_seconds(
        runs
    ).to_dict()  # run_job start → result built
    return record


def _run_burst(
    farms: list[Farm], jobs: list[PreparedJob], waiters: int, record: ModeRun, deadline: float
) -> None:
    """All jobs in one ``submit_many``; ``waiters`` threads, each bound to one of ``farms``."""
    submitted_at = time.time()
    handles = farms[0].submit_many(jobs)
    local = threading.local()
    count = itertools.count()

    def bind_thread() -> None:
        local.farm = farms[next(count) % len(farms)]

    def wait(job_id: str) -> None:
        _wait(local.farm.job(job_id), submitted_at, record, deadline)

    with ThreadPoolExecutor(max_workers=waiters, initializer=bind_thread) as pool:
        for handle in handles:
            pool.submit(wait, handle.job_id)


def _run_serial(
    farms: list[Farm], jobs: list[PreparedJob], clients: int, record: ModeRun, deadline: float
) -> None:
    """``clients`` threads, each with one job in flight: submit, wait, next."""
    queue = iter(jobs)
    lock = threading.Lock()

    def client(farm: Farm) -> None:
        while True:
            with lock:
                job = next(queue, None)
            if job is None:
                return
            submitted_at = time.time()
            _wait(farm.submit(job), submitted_at, record, deadline)

    threads = [
        threading.Thread(target=client, args=(farms[n % len(farms)],), name=f"farm-client-{n}")
        for n in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _wait(handle: Job, submitted_at: float, record: ModeRun, deadline: float) -> None:
    timing = JobTiming(handle.job_id, submitted_at)
    try:
        result = handle.wait(max(0.001, deadline - time.monotonic()))
    except JobTimeout as exc:
        timing.error = str(exc)
    except Exception as exc:  # a waiter thread must record, not lose, what went wrong
        timing.error = f"{type(exc).__name__}: {exc}"
    else:
        timing.done_at = time.time()
        timing.ok = result.status == "succeeded"
        if not timing.ok:
            timing.error = f"{result.status}: {result.error}"
        timing.worker_span = (result.timings.started_at, result.timings.finished_at)
    record.add(timing)
