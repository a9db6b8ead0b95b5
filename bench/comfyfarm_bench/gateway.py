"""``comfyfarm bench gateway``: the Comfy API v2 gateway's submit latency, submit rate, and memory
with many open event streams.

Setup: an embedded Valkey, one simulator whose node schemas are published as a worker would
(so every submission is validated, as in production), and a ``comfyfarm gateway`` process. No
worker runs: jobs stay queued, so only the gateway's own path is measured.

1. ``POST /api/v2/jobs`` latency: ``latency_requests`` submissions one after another over one
   kept-alive connection (p50, p99, nearest rank).
2. Sustained submit rate: ``rate_requests`` submissions from ``concurrency`` concurrent clients,
   and the gateway's CPU time per submission meanwhile (less noisy than the rate on a shared
   machine: the rate is CPU-bound, so it is about 1 / that where the gateway has a core).
3. ``streams`` event streams held open at once (each on its own queued job, each having received
   its snapshot): the gateway's RSS, its Redis client connections and its pub/sub subscriptions.

``processes`` > 1 runs ``comfyfarm gateway --processes N``: CPU and RSS are then summed over the
supervisor and its N children (the supervisor itself idles; RSS counts the pages the processes
share once per process, so PSS is printed too), and there is one pub/sub connection per child.
The load generator is this process, one event loop; it runs on the same machine as the gateway,
Valkey and the simulator, and competes with them for the CPUs (it prints its own CPU time per
submission: ~0.15-0.2 ms here, a sixth of a core at 1,000 submits/s). So the rate says what
this machine does with client and server on it; the gateway's CPU time per submission says
what a gateway process costs.

Where a submission's gateway CPU goes (py-spy ``--gil`` on one gateway process, 15 s of the
sustained phase, 2026-12-06, after the cuts of issue 10): aiohttp and the event loop (HTTP
parsing, routing, middlewares, socket writes) ~30 %, kombu building and sending the Celery
message plus the farm's job record (the publish thread) ~20 %, building the JobSpec ~11 %, the
rest of the handler (asset references, queue depth, response body) ~8 %, the gateway's
job-record pipeline ~8 %, handing batches to the publish thread ~7 %, validating against the
live schemas ~6 %, reading and parsing the body ~5 %. Before the cuts most concurrent
submissions also re-read the queue depth, the prompt was checked twice, and validation ran the
full check (and built a dotted path) for every input.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import secrets
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

import redis

from comfyfarm.services import GatewayProcess, RedisServer, SimulatorProcess
from comfyfarm_bench.memory import pss_kib, rss_kib, with_descendants

TENANT = "bench"
PREFIX = "gwbench:"
JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class GatewayFigures:
    post_p50_ms: float
    post_p99_ms: float
    latency_requests: int
    submits_per_second: float
    cpu_ms_per_submit: float  # the gateway processes' CPU time (all threads) / submissions
    client_cpu_ms_per_submit: float  # the load generator's (this process's) CPU / submissions
    rate_requests: int
    concurrency: int
    processes: int
    streams: int
    rss_idle_mb: float
    rss_streams_mb: float
    pss_streams_mb: float | None  # shared pages divided among the processes (None: unreadable)
    redis_clients: int
    pubsub_connections: int
    subscribed_channels: int

    def to_dict(self) -> dict[str, Any]:
        return {"bench": "gateway", **asdict(self)}

    def _pss(self) -> str:
        if self.processes == 1 or self.pss_streams_mb is None:
            return ""
        return f"; PSS {self.pss_streams_mb:.1f} MB, shared pages counted once"

    def __str__(self) -> str:
        return "\n".join(
            [
                f"POST /api/v2/jobs latency ({self.latency_requests} sequential): "
                f"p50 {self.post_p50_ms:.2f} ms, p99 {self.post_p99_ms:.2f} ms",
                f"sustained submits ({self.rate_requests}, {self.concurrency} concurrent "
                f"clients, {self.processes} gateway process{'es' if self.processes > 1 else ''}"
                f"): {self.submits_per_second:,.0f}/s, gateway CPU "
                f"{self.cpu_ms_per_submit:.2f} ms per submission (load generator, same "
                f"machine: {self.client_cpu_ms_per_submit:.2f} ms)",
                f"{self.streams} open event streams: gateway RSS {self.rss_streams_mb:.1f} MB "
                f"(idle {self.rss_idle_mb:.1f} MB{self._pss()}); gateway→Redis connections "
                f"{self.redis_clients}, of which pub/sub {self.pubsub_connections}, "
                f"channels {self.subscribed_channels}",
            ]
        )


def run_gateway(
    *,
    latency_requests: int = 1000,
    rate_requests: int = 4000,
    concurrency: int = 32,
    streams: int = 1000,
    processes: int = 1,
) -> GatewayFigures:
    _raise_fd_limit(streams * 2 + 256)
    token = secrets.token_urlsafe(24)
    with RedisServer() as server, SimulatorProcess(args=("--load-ms", "0")) as sim:
        _publish_schema(server.url, sim.url)
        env = {k: v for k, v in os.environ.items() if not k.startswith("COMFYFARM_")}
        env.update(
            COMFYFARM_BROKER_URL=server.url,
            COMFYFARM_KEY_PREFIX=PREFIX,
            COMFYFARM_API_TOKENS=f"{TENANT}:{token}",
            COMFYFARM_MAX_QUEUE_DEPTH=str(10**9),
            COMFYFARM_GATEWAY_MAX_STREAMS=str(streams + 10),
            COMFYFARM_GATEWAY_PROCESSES=str(processes),
        )
        with GatewayProcess(env=env) as gateway:
            assert gateway.proc is not None and gateway.proc.process is not None
            pid = gateway.proc.process.pid
            figures = asyncio.run(
                _measure(
                    gateway.url,
                    token,
                    pid,
                    server.url,
                    latency_requests,
                    rate_requests,
                    concurrency,
                    streams,
                    processes,
                )  # fmt: skip
            )
    return figures


async def _measure(
    url: str,
    token: str,
    pid: int,
    redis_url: str,
    latency_requests: int,
    rate_requests: int,
    concurrency: int,
    streams: int,
    processes: int,
) -> GatewayFigures:
    import aiohttp

    headers = {"Authorization": f"Bearer {token}"}
    body = json.dumps({"workflow": _workflow()}).encode()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(url, headers=headers, connector=connector) as session:

        async def submit() -> str:
            async with session.post("/api/v2/jobs", data=body, headers=JSON) as response:
                if response.status != 201:
                    raise RuntimeError(
                        f"submit answered {response.status}: {await response.text()}"
                    )
                return str((await response.json())["id"])

        for _ in range(20):  # warm up: connections, schema cache, thread pool
            await submit()
        print("measuring POST latency", file=sys.stderr)
        latencies = []
        for _ in range(latency_requests):
            start = time.perf_counter()
            await submit()
            latencies.append((time.perf_counter() - start) * 1000)
        latencies.sort()
        print("measuring the sustained submit rate", file=sys.stderr)
        ids: list[str] = []
        per_client = max(1, rate_requests // concurrency)

        async def client() -> None:
            for _ in range(per_client):
                ids.append(await submit())

        tree = with_descendants([pid])
        start, cpu_before = time.perf_counter(), _cpu_seconds(tree)
        client_before = time.process_time()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        rate = len(ids) / (time.perf_counter() - start)
        cpu_per_submit = (_cpu_seconds(tree) - cpu_before) * 1000 / max(1, len(ids))
        client_cpu = (time.process_time() - client_before) * 1000 / max(1, len(ids))
        rss_idle = _rss_mb(tree)
        print(f"opening {streams} event streams", file=sys.stderr)
        targets = ids[:streams]
        while len(targets) < streams:
            targets.append(await submit())
        opened = await asyncio.gather(*(_open_stream(session, job_id) for job_id in targets))
        try:
            await asyncio.sleep(1.0)  # let the gateway settle
            rss_streams = _rss_mb(tree)
            pss = [pss_kib(pid) for pid in tree]
            pss_streams = None if None in pss else sum(p or 0 for p in pss) / 1024
            clients, pubsubs, channels = _redis_clients(redis_url)
        finally:
            for response in opened:
                response.close()
    return GatewayFigures(
        post_p50_ms=_rank(latencies, 0.50),
        post_p99_ms=_rank(latencies, 0.99),
        latency_requests=latency_requests,
        submits_per_second=rate,
        cpu_ms_per_submit=cpu_per_submit,
        client_cpu_ms_per_submit=client_cpu,
        rate_requests=len(ids),
        concurrency=concurrency,
        processes=processes,
        streams=streams,
        rss_idle_mb=rss_idle,
        rss_streams_mb=rss_streams,
        pss_streams_mb=pss_streams,
        redis_clients=clients,
        pubsub_connections=pubsubs,
        subscribed_channels=channels,
    )


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of the processes ``pids`` so far (Linux ``/proc``)."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _rss_mb(pids: list[int]) -> float:
    """Summed RSS of ``pids`` (shared pages counted once per process: an upper bound)."""
    return sum(rss_kib(pid) or 0 for pid in pids) / 1024


async def _open_stream(session: Any, job_id: str) -> Any:
    response = await session.get(f"/api/v2/jobs/{job_id}/events")
    if response.status != 200:
        raise RuntimeError(f"events answered {response.status}: {await response.text()}")
    await response.content.readuntil(b"\n\n")  # the snapshot: the stream is live
    return response


def _redis_clients(redis_url: str) -> tuple[int, int, int]:
    """(clients other than this one, pub/sub clients, subscribed channels)."""
    client = redis.Redis.from_url(redis_url)
    try:
        listed = client.client_list()
        others = [c for c in listed if c.get("name") != "bench" and c.get("cmd") != "client|list"]
        pubsub = [c for c in others if int(c.get("sub", 0)) + int(c.get("psub", 0)) > 0]
        channels = len(client.pubsub_channels())
        return len(others), len(pubsub), channels
    finally:
        client.close()


def _publish_schema(redis_url: str, sim_url: str) -> None:
    import requests

    from comfyfarm.tasks.schemas import publish_schema

    object_info = requests.get(sim_url + "/object_info", timeout=10).json()
    client = redis.Redis.from_url(redis_url)
    try:
        publish_schema(client, PREFIX, "bench-worker", comfy_url=sim_url,
                       object_info=object_info, models={})  # fmt: skip
    finally:
        client.close()


def _workflow() -> dict[str, Any]:
    from comfyfarm.workflows import load_workflow

    return load_workflow("sd15_text2image").to_api(None)


def _rank(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    index = max(0, min(len(values) - 1, int(round(fraction * len(values) + 0.5)) - 1))
    return values[index]


def _raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
