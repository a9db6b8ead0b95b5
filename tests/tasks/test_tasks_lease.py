"""Leases on a real Redis: one owner at a time, only the owner renews or releases, expiry frees.

Every test runs twice: on Valkey as it is (``SET … IFEQ`` and ``DELIFEQ``, one command each)
and as a server without them (the Lua scripts), which must behave the same."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from comfyfarm.services import RedisServer
from comfyfarm.tasks.connect import redis_client
from comfyfarm.tasks.keyspace import lease_key
from comfyfarm.tasks.lease import Lease
from comfyfarm.tasks.settings import Settings


class WithoutConditionalCommands(redis.Redis):
    """A client of a server that has neither ``SET … IFEQ`` nor ``DELIFEQ`` (Redis 7)."""

    def execute_command(self, *args: Any, **options: Any) -> Any:
        if "IFEQ" in args:
            raise redis.ResponseError("syntax error")
        if args and args[0] == "DELIFEQ":
            raise redis.ResponseError("unknown command 'DELIFEQ'")
        return super().execute_command(*args, **options)


@pytest.fixture(params=["conditional-commands", "scripts"])
def rds(request: pytest.FixtureRequest, settings: Settings) -> Iterator[redis.Redis]:
    client = redis_client(settings)
    if request.param == "scripts":
        client = WithoutConditionalCommands(connection_pool=client.connection_pool)
    yield client
    client.close()


def wait_until(condition: Callable[[], object], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


def key(settings: Settings) -> str:
    return lease_key(settings.key_prefix, "8f14e45f-ceea-467a-9575-8a2b1c3d4e5f")


def test_only_one_owner(rds: redis.Redis, settings: Settings) -> None:
    """A second owner cannot take a live lease; the holder is reported."""
    first = Lease(rds, key(settings), "worker-a", ttl=30)
    second = Lease(rds, key(settings), "worker-b", ttl=30)
    assert first.acquire()
    assert not second.acquire()
    assert second.holder() == "worker-a"
    assert 29 < (first.remaining() or 0) <= 30


def test_acquire_is_reentrant_for_the_owner(rds: redis.Redis, settings: Settings) -> None:
    """The same owner acquiring again renews instead of failing."""
    lease = Lease(rds, key(settings), "worker-a", ttl=30)
    assert lease.acquire() and lease.acquire()


def test_non_owner_cannot_renew_or_release(rds: redis.Redis, settings: Settings) -> None:
    """Renew and release by another owner fail and leave the lease untouched."""
    owner = Lease(rds, key(settings), "worker-a", ttl=30)
    other = Lease(rds, key(settings), "worker-b", ttl=30)
    assert owner.acquire()
    assert not other.renew()
    assert not other.release()
    assert owner.holder() == "worker-a"
    assert owner.renew()
    assert owner.release()
    assert owner.holder() is None and owner.remaining() is None


def test_expiry_lets_another_owner_take_over(rds: redis.Redis, settings: Settings) -> None:
    """After the TTL passes unrenewed, a new owner acquires; the old one cannot renew any more."""
    old = Lease(rds, key(settings), "crashed-worker", ttl=0.1)
    new = Lease(rds, key(settings), "worker-b", ttl=30)
    assert old.acquire()
    assert wait_until(lambda: old.holder() is None)
    assert new.acquire()
    assert not old.renew()
    assert not old.release()
    assert new.holder() == "worker-b"


def test_keeper_renews_then_releases(rds: redis.Redis, settings: Settings) -> None:
    """keep_alive() holds a short lease well past its TTL and releases it on exit."""
    lease = Lease(rds, key(settings), "worker-a", ttl=0.3)
    assert lease.acquire()
    with lease.keep_alive(interval=0.05) as keeper:
        started = time.monotonic()
        assert not wait_until(lambda: lease.holder() != "worker-a", timeout=0.9)
        assert time.monotonic() - started > 0.8
        assert not keeper.lost.is_set()
    assert lease.holder() is None


def test_keeper_reports_a_lost_lease(rds: redis.Redis, settings: Settings) -> None:
    """If someone else ends up holding the lease, the keeper sets ``lost``."""
    lease = Lease(rds, key(settings), "worker-a", ttl=5)
    assert lease.acquire()
    with lease.keep_alive(interval=0.05) as keeper:
        rds.set(key(settings), "worker-b")
        assert keeper.lost.wait(5)
    assert lease.holder() == "worker-b"  # releasing on exit did not delete the new owner's lease


def test_a_lease_costs_one_command_per_step_where_the_server_has_ifeq() -> None:
    """Take, renew twice, release: four commands on Valkey (the scripts cost nine and more)."""
    with RedisServer() as server:
        client = redis.Redis.from_url(server.url)
        lease = Lease(client, "lease:one", "worker-a", ttl=30)
        client.config_resetstat()
        assert lease.acquire() and lease.renew() and lease.renew() and lease.release()
        stats = client.info("commandstats")
        calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
        calls.pop("config|resetstat", None)
        calls.pop("info", None)
        assert calls == {"set": 3, "delifeq": 1}
        client.close()


class CountingRedis(redis.Redis):
    """Records when each renewal (``SET … IFEQ``) was asked; fails the next ``blips`` of them
    with a connection error, as Redis does during a blip."""

    blips = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.renewals: list[tuple[float, bool]] = []  # (when, answered)

    def execute_command(self, *args: Any, **options: Any) -> Any:
        if "IFEQ" in args:
            if self.blips:
                self.blips -= 1
                self.renewals.append((time.monotonic(), False))
                raise redis.ConnectionError("Redis is restarting")
            self.renewals.append((time.monotonic(), True))
        return super().execute_command(*args, **options)


def test_keeper_renews_every_half_ttl(settings: Settings) -> None:
    """Two renewals take at least one TTL (at ttl/3 they took two thirds of it)."""
    client = CountingRedis.from_url(settings.broker_url)
    lease = Lease(client, key(settings), "worker-a", ttl=1.0)
    assert lease.acquire()
    started = time.monotonic()
    with lease.keep_alive() as keeper:
        assert wait_until(lambda: len(client.renewals) >= 2)
        assert client.renewals[1][0] - started >= 0.95 * lease.ttl
        assert not keeper.lost.is_set()
    client.close()


def test_keeper_retries_a_failed_renewal_at_once_and_keeps_the_lease(settings: Settings) -> None:
    """A renewal lost to a Redis blip is tried again within ``retry_interval``, not at the next
    tick (at ttl/2 that would be when the lease is gone): the lease outlives several TTLs."""
    client = CountingRedis.from_url(settings.broker_url)
    lease = Lease(client, key(settings), "worker-a", ttl=1.0)
    assert lease.acquire()
    client.blips = 1
    with lease.keep_alive(retry_interval=0.1) as keeper:
        assert wait_until(lambda: len(client.renewals) >= 4, timeout=10)
        (failed_at, failed), (retried_at, retried) = client.renewals[:2]
        assert not failed and retried
        assert retried_at - failed_at < lease.ttl / 4  # not the next tick, ttl/2 later
        assert not keeper.lost.is_set()
        assert lease.holder() == "worker-a"
    assert lease.holder() is None
    client.close()


def test_keeper_stops_retrying_quickly_once_the_lease_would_be_gone(settings: Settings) -> None:
    """Redis failing for longer than the lease: quick retries only while it lasts, then one
    every interval, and the first answer after it says the lease is lost."""
    client = CountingRedis.from_url(settings.broker_url)
    lease = Lease(client, key(settings), "worker-a", ttl=1.0)
    assert lease.acquire()
    client.blips = 1000
    with lease.keep_alive(retry_interval=0.1) as keeper:
        assert wait_until(lambda: len(client.renewals) >= 8, timeout=10)
        gaps = [b[0] - a[0] for a, b in zip(client.renewals, client.renewals[1:], strict=False)]
        client.blips = 0
        assert gaps[-1] >= 0.45  # back to the interval (0.5 s) once the lease would be gone
        assert lease.holder() is None  # expired meanwhile
        assert keeper.lost.wait(5)
    client.close()
