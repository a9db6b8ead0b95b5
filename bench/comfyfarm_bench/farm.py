"""Mode ``farm``: producer → Redis → workers → storage, as deployed, on the benchmark's fleet.

Starts a fresh embedded Valkey, one worker subprocess per simulator and a ``file://`` store in
``workdir``; then (timed) ``Farm.submit_many`` hands in every job at once and one
``Farm.as_completed`` follows them all, as a pipeline that submits thousands of jobs would. With
``serial``, one client thread per instance submits a job and ``Job.wait``s for it, then the next.
A job's ``submitted_at`` is just before ``submit_many`` (with ``serial``: before its own
``submit``), ``done_at`` when its result reached the client.

Besides the client-side record, ``extra`` holds the workers' memory (idle after start-up, and
the peak while running) and the workers' own time per job (``run_job`` start to result built);
each timing keeps that span, so the report can split idle gaps (``comfyfarm_bench.phases``).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from pathlib import Path

from comfyfarm.producer import Farm, Job, JobTimeout, WaitTimeout
from comfyfarm.services import RedisServer
from comfyfarm.tasks.models import JobResult
from comfyfarm.tasks.settings import Settings
from comfyfarm.workflows import PreparedJob
from comfyfarm_bench.cpu import CpuUse
from comfyfarm_bench.memory import MemorySampler
from comfyfarm_bench.record import JobTiming, ModeRun
from comfyfarm_bench.timeline import Spread
from comfyfarm_bench.workers import WorkerPool


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


def run_farm(
    urls: list[str],
    jobs: list[PreparedJob],
    workdir: Path,
    *,
    serial: bool = False,
    timeout: float = 600.0,
) -> ModeRun:
    """Start broker and workers, run ``jobs`` through the farm, stop everything again."""
    with RedisServer() as redis, contextlib.ExitStack() as stack:
        env = farm_environment(redis.url, workdir / "store")
        workers = stack.enter_context(WorkerPool(urls, env))
        idle = workers.memory()
        farm = stack.enter_context(Farm(Settings.from_env(env)))
        farm.send([])  # producer connection and queue declaration outside the timing
        with MemorySampler(workers.pids) as sampler, CpuUse() as cpu:
            record = ModeRun("farm", started_at=time.time(), requested=len(jobs))
            if serial:
                _run_serial(farm, jobs, len(urls), record, time.monotonic() + timeout)
            else:
                _run_burst(farm, jobs, record, timeout)
            record.close()
    record.extra["cpu"] = cpu.to_dict()
    peak = sampler.peak or idle
    record.extra["worker_memory"] = {"idle": idle.to_dict(), "peak": peak.to_dict()}
    runs = [job.worker_seconds for job in record.done if job.worker_seconds is not None]
    record.extra["worker_run_ms"] = Spread.of_seconds(
        runs
    ).to_dict()  # run_job start → result built
    return record


def _run_burst(farm: Farm, jobs: list[PreparedJob], record: ModeRun, timeout: float) -> None:
    """All jobs in one ``submit_many``, all followed by one ``as_completed``."""
    submitted_at = time.time()
    handles = farm.submit_many(jobs)
    timings = {handle.job_id: JobTiming(handle.job_id, submitted_at) for handle in handles}
    try:
        for result in farm.as_completed(handles, timeout):
            record.add(_finished(timings.pop(result.job_id), result))
    except WaitTimeout as exc:
        for timing in timings.values():
            timing.error = str(exc)
            record.add(timing)


def _run_serial(
    farm: Farm, jobs: list[PreparedJob], clients: int, record: ModeRun, deadline: float
) -> None:
    """``clients`` threads, each with one job in flight: submit, wait, next."""
    queue = iter(jobs)
    lock = threading.Lock()

    def client() -> None:
        while True:
            with lock:
                job = next(queue, None)
            if job is None:
                return
            submitted_at = time.time()
            _wait(farm.submit(job), submitted_at, record, deadline)

    threads = [threading.Thread(target=client, name=f"farm-client-{n}") for n in range(clients)]
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
        _finished(timing, result)
    record.add(timing)


def _finished(timing: JobTiming, result: JobResult) -> JobTiming:
    """Fill in ``timing`` from the result that just reached the client."""
    timing.done_at = time.time()
    timing.ok = result.status == "succeeded"
    if not timing.ok:
        timing.error = f"{result.status}: {result.error}"
    timing.worker_span = (result.timings.started_at, result.timings.finished_at)
    return timing
