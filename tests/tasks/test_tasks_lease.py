"""Leases on a real Redis: one owner at a time, only the owner renews or releases, expiry frees."""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

from comfyfarm.tasks.keyspace import lease_key
from comfyfarm.tasks.lease import Lease
from comfyfarm.tasks.settings import Settings


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
