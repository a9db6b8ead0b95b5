"""How long the jobs of a killed worker wait before another worker takes them over.

``RecoveryWatch`` is told by the soak's ``WorkerKiller`` just before each kill which worker dies
(``held_by``: the jobs whose lease that worker holds, read from Redis — a lease's owner is
``<worker name>:<random>``) and right after it (``killed``). A thread then polls those jobs until
each is *taken over*: its lease is held by another owner (a new worker started it, or followed
its prompt), or its final result exists, written after the kill. A job that finished before the
kill is not counted; one that is never taken over before ``stop`` is counted as not recovered.

Per kill, ``recovery_seconds`` is the time from the kill to the takeover of its *last* job (the
kill is over when every job it orphaned runs again); a kill of a worker that held no job has
none. ``requeue_seconds`` is the farm's own part of it: from the kill until the killed worker's
deliveries of those jobs have left kombu's ``unacked`` hash (the takeover put them back on their
queues) or the jobs were taken over, whichever came first; what follows is the wait for a worker
free to start them. ``to_dict`` gives every kill and the nearest-rank p50 and max over the kills.

A takeover needs a worker that can start the job. In a soak with hang faults at the product's
defaults a hung ComfyUI keeps its worker's pool processes for the stall timeout (2 minutes), so
there are stretches where every simulator hangs and no worker can start anything. ``to_dict``
takes the hangs the simulator keepers saw (``hangs``: when each hung simulator was hung) and
reports per kill ``all_hung_seconds``: how much of its recovery time every simulator was hung.
It explains a long recovery; it is not subtracted from it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import redis

from comfyfarm.tasks.keyspace import job_id_from_lease_key, job_result_key, lease_key, lease_pattern
from comfyfarm.worker.unacked import UNACKED
from comfyfarm_bench.timeline import percentile

POLL_SECONDS = 0.25
#: A kill whose jobs are not all taken over within this long stops being watched (not recovered).
WATCH_LIMIT_SECONDS = 900.0


@dataclass
class Kill:
    """One kill: which worker, when (``time.time()``), the jobs it held (job id → lease owner)
    and when each was taken over (seconds after the kill)."""

    worker: str
    at: float
    held: dict[str, str]
    taken_over: dict[str, float] = field(default_factory=dict)
    finished_before: set[str] = field(default_factory=set)
    #: Job id → the delivery tags the killed worker held for it (kombu's ``unacked`` hash).
    tags: dict[str, set[str]] = field(default_factory=dict)
    requeued: dict[str, float] = field(default_factory=dict)

    @property
    def orphaned(self) -> set[str]:
        return set(self.held) - self.finished_before

    @property
    def recovered(self) -> bool:
        return self.orphaned <= set(self.taken_over)

    @property
    def recovery_seconds(self) -> float | None:
        """Kill to the takeover of its last job; None when it orphaned none or not all came back."""
        if not self.orphaned or not self.recovered:
            return None
        return max(self.taken_over[job] for job in self.orphaned)

    @property
    def requeue_seconds(self) -> float | None:
        """Kill to the moment its last job was back on a queue (or taken over), if all were."""
        if not self.orphaned or not self.recovered:
            return None
        return max(min(self.requeued.get(job, self.taken_over[job]), self.taken_over[job])
                   for job in self.orphaned)  # fmt: skip

    def to_dict(self, hangs: Hangs | None = None) -> dict[str, Any]:
        seconds, requeue = self.recovery_seconds, self.requeue_seconds
        figures = {
            "worker": self.worker,
            "at": round(self.at, 3),
            "jobs": len(self.orphaned),
            "recovered": self.recovered,
            "recovery_seconds": None if seconds is None else round(seconds, 2),
            "requeue_seconds": None if requeue is None else round(requeue, 2),
        }
        if hangs is not None and seconds is not None:
            figures["all_hung_seconds"] = round(hangs.all_hung(self.at, self.at + seconds), 1)
        return figures


@dataclass(frozen=True)
class Hangs:
    """When each of ``simulators`` simulators was hung: ``(start, end)`` in ``time.time()``."""

    simulators: int
    windows: list[tuple[float, float]]

    def all_hung(self, start: float, end: float, *, step: float = 0.5) -> float:
        """Seconds of ``[start, end]`` during which every simulator was hung (``step`` apart)."""
        if self.simulators < 1 or end <= start:
            return 0.0
        ticks = int((end - start) / step)
        hung = sum(
            1
            for tick in range(ticks)
            if sum(1 for a, b in self.windows if a <= start + tick * step < b) >= self.simulators
        )
        return hung * step


class RecoveryWatch:
    """Measures the takeover of killed workers' jobs (see the module docstring)."""

    def __init__(self, rds: redis.Redis, prefix: str) -> None:
        self._rds = rds
        self._prefix = prefix
        self.kills: list[Kill] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def held_by(self, worker: str) -> dict[str, str]:
        """Job id → lease owner of every lease ``worker`` holds now."""
        keys = [_text(k) for k in self._rds.scan_iter(match=lease_pattern(self._prefix), count=500)]
        if not keys:
            return {}
        owners = self._rds.mget(keys)
        return {
            job_id_from_lease_key(self._prefix, key): _text(owner)
            for key, owner in zip(keys, owners, strict=True)
            if owner is not None and _text(owner).startswith(f"{worker}:")
        }

    def killed(self, worker: str, held: dict[str, str], *, at: float) -> None:
        """``worker`` was killed at ``at`` holding ``held`` (from ``held_by`` just before)."""
        kill = Kill(worker, at, held, tags=self._unacked_tags(set(held)))
        self.kills.append(kill)
        if held:
            thread = threading.Thread(target=self._follow, args=(kill,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)

    def _follow(self, kill: Kill) -> None:
        waiting = dict(kill.held)
        limit = time.monotonic() + WATCH_LIMIT_SECONDS
        while waiting and time.monotonic() < limit and not self._stop.is_set():
            ids = list(waiting)
            with self._rds.pipeline(transaction=False) as pipe:
                for job_id in ids:
                    pipe.get(lease_key(self._prefix, job_id))
                    pipe.get(job_result_key(self._prefix, job_id))
                replies = pipe.execute()
            now = time.time()
            self._note_requeued(kill, ids, now)
            for index, job_id in enumerate(ids):
                owner, result = replies[2 * index], replies[2 * index + 1]
                finished = _finished_at(result)
                if finished is not None and finished <= kill.at:
                    kill.finished_before.add(job_id)
                    del waiting[job_id]
                elif finished is not None or (
                    owner is not None and _text(owner) != waiting[job_id]
                ):
                    kill.taken_over[job_id] = now - kill.at
                    del waiting[job_id]
            self._stop.wait(POLL_SECONDS)

    def _unacked_tags(self, job_ids: set[str]) -> dict[str, set[str]]:
        """Job id → the tags of its deliveries in kombu's ``unacked`` hash, for ``job_ids``."""
        tags: dict[str, set[str]] = {}
        if not job_ids:
            return tags
        for tag, raw in self._rds.hgetall(self._prefix + UNACKED).items():
            job_id = _delivered_job(raw)
            if job_id in job_ids:
                tags.setdefault(job_id, set()).add(_text(tag))
        return tags

    def _note_requeued(self, kill: Kill, ids: list[str], now: float) -> None:
        """Mark the jobs of ``ids`` none of whose killed deliveries is unacknowledged any more."""
        pending = [job for job in ids if job not in kill.requeued and kill.tags.get(job)]
        if not pending:
            return
        with self._rds.pipeline(transaction=False) as pipe:
            for job_id in pending:
                for tag in sorted(kill.tags[job_id]):
                    pipe.hexists(self._prefix + UNACKED, tag)
            replies = iter(pipe.execute())
        for job_id in pending:
            if not any([next(replies) for _ in kill.tags[job_id]]):
                kill.requeued[job_id] = now - kill.at

    def to_dict(self, hangs: Hangs | None = None) -> dict[str, Any]:
        """The figures (module docstring); ``hangs`` adds each kill's ``all_hung_seconds``."""
        return {
            "kills": len(self.kills),
            "kills_with_jobs": sum(1 for kill in self.kills if kill.orphaned),
            "not_recovered": sum(1 for kill in self.kills if kill.orphaned and not kill.recovered),
            "recovery_seconds": _p50_max(kill.recovery_seconds for kill in self.kills),
            "requeue_seconds": _p50_max(kill.requeue_seconds for kill in self.kills),
            "per_kill": [kill.to_dict(hangs) for kill in self.kills],
        }


def _p50_max(values: Iterable[float | None]) -> dict[str, float | None]:
    """The nearest-rank p50 and the max of the values that are not None, rounded."""
    seconds = [value for value in values if value is not None]
    p50, worst = percentile(seconds, 50), max(seconds, default=None)
    return {
        "p50": None if p50 is None else round(p50, 2),
        "max": None if worst is None else round(worst, 2),
    }


def _delivered_job(raw: bytes | str) -> str:
    """The task id in the headers of one ``unacked`` entry (``[message, exchange, key]``)."""
    try:
        return str(json.loads(raw)[0]["headers"]["id"])
    except (ValueError, KeyError, TypeError, IndexError):
        return ""


def _moved(owner: bytes | str | None, old_owner: str) -> bool:
    """Whether the lease is held now, by someone else than the killed worker."""
    return owner is not None and _text(owner) != old_owner


def _finished_at(result: bytes | str | None) -> float | None:
    if result is None:
        return None
    try:
        return float(json.loads(result)["timings"]["finished_at"])
    except (ValueError, KeyError, TypeError):
        return 0.0  # a result we cannot read: it exists, so the job is over


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
