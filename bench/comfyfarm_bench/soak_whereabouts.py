"""Where a job the soak is still waiting for is: queued, unacknowledged, leased, or nowhere.

A job without a final result is normally somewhere the farm can reach it: its message waits in a
queue list (``queued``), a worker holds it (``unacked``: running, or waiting for a retry's
countdown), or it runs under a lease (``leased``). ``nowhere`` means none of these: its message
is gone — the loss kombu's Redis fetch can cause (``BRPOP`` takes the message off its list, and it
is written to ``unacked`` only after the reply has been read; a worker SIGKILLed in between takes
it along; ``tests/reliability/test_rel_fetch_window.py``). Nothing brings such a job back, so the
soak stops waiting for it (``NOWHERE_SECONDS``) and names it in ``lost_jobs``.

Reading every queue list costs one ``LRANGE`` per queue and priority; the soak asks only about
a handful of jobs, at most every ``CHECK_EVERY`` seconds.
"""

from __future__ import annotations

import redis

from comfyfarm.tasks.keyspace import lease_key
from comfyfarm.tasks.routing import PRIORITY_SEP, PRIORITY_STEPS

#: kombu's key of a queue's bindings (``_kombu.binding.<queue>``) and of unacknowledged messages.
BINDING = "_kombu.binding."
UNACKED = "unacked"
#: A job seen nowhere for this long, in every check, is lost.
NOWHERE_SECONDS = 300.0
CHECK_EVERY = 30.0
#: Asked about only when this few jobs are left (then the check is cheap and a loss likely).
MAX_ASKED = 20


def queue_keys(rds: redis.Redis, prefix: str) -> list[str]:
    """The list keys of every queue the farm declared, one per priority step."""
    keys = []
    for binding in rds.scan_iter(match=f"{prefix}{BINDING}*", count=1000):
        queue = _text(binding)[len(prefix) + len(BINDING) :]
        keys += [
            f"{prefix}{queue}" if step == 0 else f"{prefix}{queue}{PRIORITY_SEP}{step}"
            for step in PRIORITY_STEPS
        ]
    return keys


def whereabouts(rds: redis.Redis, prefix: str, job_ids: list[str]) -> dict[str, str]:
    """``queued``, ``unacked``, ``leased`` or ``nowhere`` for each of ``job_ids``."""
    found: dict[str, str] = {}
    with rds.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.exists(lease_key(prefix, job_id))
        leased = pipe.execute()
    for job_id, held in zip(job_ids, leased, strict=True):
        if held:
            found[job_id] = "leased"
    unacked = " ".join(_text(value) for value in rds.hvals(f"{prefix}{UNACKED}"))
    for job_id in job_ids:
        if job_id not in found and job_id in unacked:
            found[job_id] = "unacked"
    waiting = [job_id for job_id in job_ids if job_id not in found]
    if waiting:
        for key in queue_keys(rds, prefix):
            messages = " ".join(_text(message) for message in rds.lrange(key, 0, -1))
            for job_id in waiting:
                if job_id in messages:
                    found.setdefault(job_id, "queued")
    return {job_id: found.get(job_id, "nowhere") for job_id in job_ids}


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


class GoneWatch:
    """Tells the soak when every job it still waits for has been ``nowhere`` for
    ``NOWHERE_SECONDS`` (checked every ``CHECK_EVERY`` seconds, once few jobs are left)."""

    def __init__(self, rds: redis.Redis, prefix: str, *, patience: float = NOWHERE_SECONDS):
        self._rds = rds
        self._prefix = prefix
        self._patience = patience
        self._checked = 0.0
        self.nowhere_since: dict[str, float] = {}

    def all_gone(self, waiting: list[str], now: float) -> bool:
        """Whether to stop waiting: every job of ``waiting`` is lost (``now``: monotonic)."""
        if not waiting or len(waiting) > MAX_ASKED or now - self._checked < CHECK_EVERY:
            return False
        self._checked = now
        places = whereabouts(self._rds, self._prefix, waiting)
        for job_id, place in places.items():
            if place == "nowhere":
                self.nowhere_since.setdefault(job_id, now)
            else:
                self.nowhere_since.pop(job_id, None)
        since = self.nowhere_since
        return all(job_id in since and now - since[job_id] >= self._patience for job_id in waiting)
