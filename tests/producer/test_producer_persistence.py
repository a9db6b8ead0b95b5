"""``comfyfarm status`` warns when the broker would lose the queues on restart (no AOF), and
says nothing when it cannot tell (CONFIG forbidden)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
import redis

from comfyfarm.producer import Farm
from comfyfarm.producer.persistence import broker_persistence
from comfyfarm.services import RedisServer
from comfyfarm.tasks.settings import Settings


@pytest.fixture
def volatile() -> Iterator[RedisServer]:
    """A broker without AOF and without RDB snapshots (as the test suite's own)."""
    with RedisServer(appendonly=False) as server:
        yield server


@pytest.fixture
def durable() -> Iterator[RedisServer]:
    with RedisServer(appendonly=True) as server:
        yield server


def test_a_broker_without_aof_gets_a_warning_in_the_status(volatile: RedisServer) -> None:
    """No AOF and no snapshots: a restart loses every job, and the status says so."""
    with Farm(Settings(broker_url=volatile.url)) as farm:
        [warning] = farm.status(ping_timeout=None).warnings
    assert "without persistence" in warning and "appendonly yes" in warning


def test_rdb_snapshots_alone_still_lose_recent_jobs(volatile: RedisServer) -> None:
    """RDB without AOF: the warning names the snapshot schedule."""
    client = redis.Redis.from_url(volatile.url)
    client.config_set("save", "3600 1")
    warning = broker_persistence(client).warning
    assert warning is not None and "since its last RDB snapshot" in warning and "3600 1" in warning


def test_a_broker_with_aof_gets_no_warning(durable: RedisServer) -> None:
    with Farm(Settings(broker_url=durable.url)) as farm:
        assert farm.status(ping_timeout=None).warnings == []


def test_a_broker_that_forbids_config_is_not_an_error(volatile: RedisServer) -> None:
    """A managed Redis often forbids CONFIG (here by ACL): unknown, no warning, no traceback."""
    admin = redis.Redis.from_url(volatile.url)
    admin.acl_setuser(
        "app", enabled=True, passwords=["+secret"], keys=["*"], channels=["*"],
        commands=["+@all", "-config"],
    )  # fmt: skip
    url = f"redis://app:secret@{volatile.host}:{volatile.port}/0"
    persistence = broker_persistence(redis.Redis.from_url(url))
    assert persistence.appendonly is None and persistence.warning is None


def test_the_status_command_prints_the_warning(volatile: RedisServer) -> None:
    """What an operator sees: a ``warning:`` line (the exit status is about workers, not this)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMFYFARM_")}
    env["COMFYFARM_BROKER_URL"] = volatile.url
    done = subprocess.run(
        [sys.executable, "-P", "-m", "comfyfarm", "status"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert "warning: the broker runs without persistence" in done.stdout, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
