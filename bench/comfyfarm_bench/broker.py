"""``comfyfarm bench broker``: what one job costs the broker, and what one Redis can carry.

A fresh embedded Valkey, ``instances`` simulators and their workers run ``jobs`` jobs (all
submitted at once, followed by one ``as_completed``). Valkey's own counters are read before and
after: ``INFO commandstats`` (calls per command), ``INFO stats`` (bytes in and out) and ``INFO
cpu`` (the server's CPU seconds). The idle background (heartbeats, health, takeover sweeps, the
fetch's poll) is measured for ``idle_seconds`` before the run and reported apart, as commands per
worker-second (in total and by command name).

Both are counted only once the farm is warm (``wait_until_warm``): every worker registered and
no connection opened for ``WARM_QUIET`` seconds, i.e. every pool process has opened at fork what
its first job would otherwise open (``worker.task.warm_up``) and the takeover its own. A farm
runs for hours after its start-up; counting the start-up's connections would charge them to the
first jobs.

The ceiling is projected from the server's CPU: Redis executes commands on one thread, so
``1 / cpu_seconds_per_job`` is how many jobs per second one core of Redis can serve at these
settings, and that many 1-second jobs keep as many GPUs busy. It is a projection from one run on
this machine, not a measured saturation.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis

from comfyfarm.producer import Farm
from comfyfarm.services import RedisServer
from comfyfarm.tasks.registry import list_workers
from comfyfarm.tasks.settings import Settings
from comfyfarm_bench.farm import farm_environment
from comfyfarm_bench.fleet import Fleet
from comfyfarm_bench.prompts import fresh_jobs
from comfyfarm_bench.workers import WorkerPool

#: Seconds without a new connection after which the farm counts as warm: longer than the
#: first takeover round (up to 6 s after a worker starts), which opens the sweeper's connection.
WARM_QUIET = 8.0
#: Longest wait for a warm farm (workers importing on a loaded machine are slow).
WARM_TIMEOUT = 120.0


@dataclass
class Counters:
    """Valkey's cumulative counters at one moment (``INFO`` left out: the bench's own reads)."""

    calls: dict[str, int]
    bytes_in: int
    bytes_out: int
    cpu_seconds: float
    at: float

    @classmethod
    def read(cls, client: redis.Redis) -> Counters:
        stats, cpu = client.info("stats"), client.info("cpu")
        calls = {
            name.removeprefix("cmdstat_"): int(value["calls"])
            for name, value in client.info("commandstats").items()
            if name != "cmdstat_info"  # this reading's own
        }
        return cls(calls, int(stats["total_net_input_bytes"]),
                   int(stats["total_net_output_bytes"]),
                   float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]),
                   time.monotonic())  # fmt: skip

    def minus(self, earlier: Counters) -> Counters:
        calls = {k: v - earlier.calls.get(k, 0) for k, v in self.calls.items()}
        return Counters({k: v for k, v in calls.items() if v > 0},
                        self.bytes_in - earlier.bytes_in, self.bytes_out - earlier.bytes_out,
                        self.cpu_seconds - earlier.cpu_seconds, self.at - earlier.at)  # fmt: skip


@dataclass
class BrokerCost:
    jobs: int
    instances: int
    seconds: float
    commands_per_job: float
    bytes_in_per_job: float
    bytes_out_per_job: float
    cpu_ms_per_job: float
    top_commands_per_job: dict[str, float] = field(default_factory=dict)
    idle_commands_per_worker_second: float = 0.0
    idle_top_commands_per_worker_second: dict[str, float] = field(default_factory=dict)
    ceiling_jobs_per_second: float = 0.0
    gpus_of_1s_jobs: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_broker_cost(
    *, jobs: int, instances: int, job_ms: float, idle_seconds: float = 10.0,
    timeout: float = 900.0, workdir: Path,
) -> BrokerCost:  # fmt: skip
    """Run ``jobs`` through a fresh farm and return what they cost the broker."""
    with contextlib.ExitStack() as stack:
        fleet = Fleet(instances, job_ms).start()
        stack.callback(fleet.stop)
        server = stack.enter_context(RedisServer())
        env = farm_environment(server.url, workdir / "store")
        stack.enter_context(WorkerPool(fleet.urls, env))
        settings = Settings.from_env(env)
        farm = stack.enter_context(Farm(settings))
        client = stack.enter_context(redis.Redis.from_url(server.url))
        farm.send([])
        wait_until_warm(client, settings.key_prefix, workers=instances)
        idle_start = Counters.read(client)
        time.sleep(idle_seconds)  # the background rate is what this measures: a wait, not a sync
        idle = Counters.read(client).minus(idle_start)
        prepared = fresh_jobs(jobs)
        before = Counters.read(client)
        handles = farm.submit_many(prepared)
        finished = sum(1 for _ in farm.as_completed(handles, timeout))
        spent = Counters.read(client).minus(before)
    per_job = max(finished, 1)
    total_calls = sum(spent.calls.values())
    top = _top(spent.calls)
    cpu_per_job = spent.cpu_seconds / per_job
    ceiling = 1.0 / cpu_per_job if cpu_per_job > 0 else 0.0
    return BrokerCost(
        jobs=finished,
        instances=instances,
        seconds=round(spent.at, 2),
        commands_per_job=round(total_calls / per_job, 1),
        bytes_in_per_job=round(spent.bytes_in / per_job),
        bytes_out_per_job=round(spent.bytes_out / per_job),
        cpu_ms_per_job=round(cpu_per_job * 1000, 3),
        top_commands_per_job={name: round(count / per_job, 2) for name, count in top},
        idle_commands_per_worker_second=round(
            sum(idle.calls.values()) / max(idle.at, 1e-9) / instances, 2
        ),
        idle_top_commands_per_worker_second={
            name: round(count / max(idle.at, 1e-9) / instances, 2)
            for name, count in _top(idle.calls)
        },
        ceiling_jobs_per_second=round(ceiling, 1),
        gpus_of_1s_jobs=round(ceiling, 0),
    )


def wait_until_warm(
    client: redis.Redis, prefix: str, *, workers: int, quiet: float = WARM_QUIET,
    timeout: float = WARM_TIMEOUT,
) -> None:  # fmt: skip
    """Return once ``workers`` workers are registered and the server has accepted no connection
    for ``quiet`` seconds (pool processes warm up after the worker says it is ready, so the
    connection count is what tells they are done); raise TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while True:
        now = time.monotonic()
        received = int(client.info("stats")["total_connections_received"])
        if received != last:
            last, since = received, now
        registered = len(list_workers(client, prefix))
        if registered >= workers and now - since >= quiet:
            return
        if now > deadline:
            raise TimeoutError(f"the farm was not warm after {timeout:.0f} s "
                               f"({registered}/{workers} workers registered)")  # fmt: skip
        time.sleep(0.25)  # the server's counters have no event to await


def _top(calls: dict[str, int], count: int = 10) -> list[tuple[str, int]]:
    """The ``count`` commands called most often, most first."""
    return sorted(calls.items(), key=lambda item: -item[1])[:count]
