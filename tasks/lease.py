"""Job leases: what keeps a re-delivered job from running twice.

Redis re-delivers an unacknowledged message after the visibility timeout even if its worker is
still busy (or the message is restored after a crash). The worker that runs a job holds
``<prefix>lease:<job_id>`` and renews it while the job runs; a second copy that finds a live lease
held by someone else does not execute. A crashed worker stops renewing, the lease expires after
``ttl`` seconds, and the next delivery takes over.

Only the owner can renew or release (an atomic compare-and-set: one ``SET … IFEQ`` or ``DELIFEQ``
where the server has them, a Lua script elsewhere, ``tasks.conditional``), so a worker whose
lease expired and was taken over cannot extend or delete the new owner's lease. Taking a free
lease is one ``SET NX``; only a lease that is taken already goes through the script (it may be
our own).
"""

from __future__ import annotations

import logging
import threading
import time
from types import TracebackType

import redis

from comfyfarm.tasks.conditional import delete_if_equal, set_if_equal

log = logging.getLogger(__name__)

# KEYS[1] = lease key; ARGV[1] = owner; ARGV[2] = ttl in ms. Returns 1 if owned afterwards.
_ACQUIRE = """
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('pexpire', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class Lease:
    """A TTL lease on ``key`` held by ``owner`` (a string unique to the worker process).

    ``acquire`` is re-entrant for the same owner (it renews), so a worker restarted under the same
    owner string takes its own job back at once.
    """

    def __init__(self, client: redis.Redis, key: str, owner: str, ttl: float) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        if not owner:
            raise ValueError("owner must not be empty")
        self.client = client
        self.key = key
        self.owner = owner
        self.ttl = ttl
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    @property
    def _ttl_ms(self) -> int:
        return max(1, int(self.ttl * 1000))

    def acquire(self) -> bool:
        """Take the lease if it is free or already ours; False if someone else holds it."""
        if self.client.set(self.key, self.owner, nx=True, px=self._ttl_ms):
            return True
        return bool(self._acquire(keys=[self.key], args=[self.owner, self._ttl_ms]))

    def renew(self) -> bool:
        """Extend the lease by ``ttl``; False if it is no longer ours (expired or taken over)."""
        renewed = set_if_equal(self.client, self.key, self.owner, self.owner, px=self._ttl_ms)
        if renewed is not None:
            return renewed
        return bool(self._renew(keys=[self.key], args=[self.owner, self._ttl_ms]))

    def release(self) -> bool:
        """Drop the lease if it is ours; False if it was not (already expired or taken over)."""
        released = delete_if_equal(self.client, self.key, self.owner)
        if released is not None:
            return released
        return bool(self._release(keys=[self.key], args=[self.owner]))

    def holder(self) -> str | None:
        """The current owner, or None if nobody holds the lease."""
        value = self.client.get(self.key)
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    def remaining(self) -> float | None:
        """Seconds until the lease expires, or None if nobody holds it."""
        ms = int(self.client.pttl(self.key))
        return None if ms < 0 else ms / 1000

    def keep_alive(
        self, interval: float | None = None, *, retry_interval: float | None = None
    ) -> LeaseKeeper:
        """A context manager that renews this lease in a thread every ``interval`` seconds
        (default ttl/2) and releases it on exit; after a renewal Redis failed, it tries again
        every ``retry_interval`` (default 1 s, less for a short interval) while the lease
        lasts (``LeaseKeeper``)."""
        interval = interval if interval is not None else self.ttl / 2
        if retry_interval is None:
            retry_interval = min(RETRY_SECONDS, interval / 5)
        return LeaseKeeper(self, interval, retry_interval=retry_interval)

    def __repr__(self) -> str:
        return f"Lease(key={self.key!r}, owner={self.owner!r}, ttl={self.ttl:g})"


#: How soon a renewal that failed with a Redis error is tried again (at most).
RETRY_SECONDS = 1.0


class LeaseKeeper:
    """Renews a held lease in a daemon thread; ``lost`` is set when a renewal finds it gone.

    Renewing every ttl/2 (not ttl/3) costs a pipelined 10 s job, whose lease is held ~20 s
    (taken while it waits in ComfyUI's queue behind the previous job), one renewal instead of
    two. That leaves a single renewal as the margin, so one that fails with a Redis error (a
    blip, a failover) is not left for the next tick, when the lease would be gone: it is
    tried again every ``retry_interval`` for as long as the last renewal keeps the lease
    alive, then at the usual pace (a Redis that answers again says whether it is still ours).
    """

    def __init__(
        self,
        lease: Lease,
        interval: float,
        *,
        retry_interval: float = RETRY_SECONDS,
    ) -> None:
        self.lease = lease
        self.interval = interval
        self.retry_interval = retry_interval
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"lease-keeper {lease.key}", daemon=True
        )

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop(release=True)

    def stop(self, *, release: bool = True) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.interval + 5)
        if release:
            try:
                self.lease.release()
            except redis.RedisError as exc:  # it expires on its own
                log.warning("could not release %r: %s", self.lease, exc)

    def _run(self) -> None:
        # Until when the lease is surely held: from before the call that took or renewed it
        # (this thread starts after the lease was taken, so its start is an upper bound).
        held_until = time.monotonic() + self.lease.ttl
        wait = self.interval
        while not self._stop.wait(wait):
            asked_at = time.monotonic()
            try:
                renewed = self.lease.renew()
            except redis.RedisError as exc:
                retry = asked_at + self.retry_interval < held_until
                log.warning("could not renew %r: %s; trying again in %g s", self.lease, exc,
                            self.retry_interval if retry else self.interval)  # fmt: skip
                wait = self.retry_interval if retry else self.interval
                continue
            if not renewed:
                log.warning("lost %r (expired or taken over)", self.lease)
                self.lost.set()
                return
            held_until, wait = asked_at + self.lease.ttl, self.interval
