"""A snapshot of the farm: workers (registry + ping), queue depths, running jobs, dead letters,
and warnings about its set-up (a broker that would lose the queues on restart: ``persistence``).

Queue depth is the sum of ``LLEN`` over a queue's ten priority lists (under the key prefix).
Queues are the shared one, those named by registered workers, and any other non-empty
``comfyfarm*`` list found by SCAN (e.g. the queue of a worker that has gone away).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import redis

from comfyfarm.producer.persistence import broker_persistence
from comfyfarm.producer.queued_cancelled import cancelled_job_ids, count_cancelled
from comfyfarm.tasks.keys import WorkerInfo, count_dead_letters, list_workers
from comfyfarm.tasks.keyspace import job_id_from_lease_key, lease_pattern
from comfyfarm.tasks.routing import PRIORITY_SEP, SHARED_QUEUE, queue_keys


@dataclass(frozen=True)
class QueueDepth:
    """Messages waiting in one queue, in total and per farm priority (9 = most urgent)."""

    name: str
    total: int
    by_priority: dict[int, int] = field(default_factory=dict)
    #: Of ``total``, messages of cancelled jobs (dropped when a worker takes them).
    cancelled: int = 0


@dataclass(frozen=True)
class RunningJob:
    """A job some worker holds the lease of; ``holder`` is the lease owner string."""

    job_id: str
    holder: str
    lease_remaining: float | None


@dataclass(frozen=True)
class WorkerStatus:
    """A registered worker. ``online``: answered the Celery ping (None when not pinged; a
    busy worker on the solo pool cannot answer). ``heartbeat_age``: seconds since it
    registered last."""

    info: WorkerInfo
    online: bool | None
    heartbeat_age: float


@dataclass(frozen=True)
class FarmStatus:
    workers: list[WorkerStatus]
    queues: list[QueueDepth]
    running: list[RunningJob]
    dead_letters: int
    pinged_nodes: list[str]
    checked_at: float
    #: Sentences for the operator about the farm's set-up (e.g. a broker without AOF).
    warnings: list[str] = field(default_factory=list)

    def queue_depth(self, name: str = SHARED_QUEUE) -> int:
        return next((queue.total for queue in self.queues if queue.name == name), 0)

    @property
    def queued(self) -> int:
        return sum(queue.total for queue in self.queues)

    @property
    def cancelled_queued(self) -> int:
        """Queued messages of cancelled jobs (part of ``queued``; no worker will run them)."""
        return sum(queue.cancelled for queue in self.queues)

    @property
    def serving(self) -> list[WorkerStatus]:
        """Workers that can take a job now: their ComfyUI is healthy and they did not fail to
        answer the ping (not pinged counts as answering)."""
        return [w for w in self.workers if w.info.health == "ok" and w.online is not False]


def queue_depths(client: redis.Redis, prefix: str, names: set[str]) -> list[QueueDepth]:
    """Depths of ``names`` plus every other non-empty farm queue found in Redis."""
    wanted = set(names) | {SHARED_QUEUE} | discover_queues(client, prefix)
    ordered = sorted(wanted, key=lambda name: (name != SHARED_QUEUE, name))
    with client.pipeline(transaction=False) as pipe:
        for name in ordered:
            for key in queue_keys(prefix, name).values():
                pipe.llen(key)
        lengths = pipe.execute()
    cancelled_ids = cancelled_job_ids(client, prefix) if any(lengths) else set()
    depths, position = [], 0
    for name in ordered:
        by_priority, cancelled = {}, 0
        for priority, key in queue_keys(prefix, name).items():
            if lengths[position]:
                by_priority[priority] = int(lengths[position])
                cancelled += count_cancelled(client, key, cancelled_ids)
            position += 1
        depths.append(QueueDepth(name, sum(by_priority.values()), by_priority, cancelled))
    return depths


def discover_queues(client: redis.Redis, prefix: str) -> set[str]:
    """Names of non-empty farm queues (lists named ``<prefix>comfyfarm*``)."""
    pattern = _escape(prefix) + SHARED_QUEUE + "*"
    found = set()
    for key in client.scan_iter(match=pattern, count=1000, _type="list"):
        name = _text(key)[len(prefix) :].split(PRIORITY_SEP, 1)[0]
        found.add(name)
    return found


def running_jobs(client: redis.Redis, prefix: str) -> list[RunningJob]:
    keys = [_text(key) for key in client.scan_iter(match=lease_pattern(prefix), count=1000)]
    if not keys:
        return []
    with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.get(key)
            pipe.pttl(key)
        answers = pipe.execute()
    jobs = []
    for index, key in enumerate(keys):
        holder, ttl_ms = answers[2 * index], answers[2 * index + 1]
        if holder is None:
            continue  # expired between SCAN and GET
        remaining = None if ttl_ms is None or ttl_ms < 0 else ttl_ms / 1000
        jobs.append(RunningJob(job_id_from_lease_key(prefix, key), _text(holder), remaining))
    return sorted(jobs, key=lambda job: job.job_id)


def collect_status(client: redis.Redis, prefix: str, pinged_nodes: list[str] | None) -> FarmStatus:
    """Assemble a FarmStatus; ``pinged_nodes`` None means the ping was skipped."""
    now = time.time()
    infos = list_workers(client, prefix)
    workers = [
        WorkerStatus(
            info=info,
            online=None if pinged_nodes is None else _answered(info, pinged_nodes),
            heartbeat_age=max(0.0, now - info.heartbeat),
        )
        for info in infos
    ]
    names = {queue for info in infos for queue in info.queues}
    warning = broker_persistence(client).warning
    return FarmStatus(
        workers=workers,
        queues=queue_depths(client, prefix, names),
        running=running_jobs(client, prefix),
        dead_letters=count_dead_letters(client, prefix),
        pinged_nodes=sorted(pinged_nodes or []),
        checked_at=now,
        warnings=[warning] if warning else [],
    )


def _answered(info: WorkerInfo, nodes: list[str]) -> bool:
    if info.node:
        return info.node in nodes
    return any(node == info.name or node.startswith(info.name + "@") for node in nodes)


def _escape(text: str) -> str:
    return "".join(f"\\{ch}" if ch in "*?[]\\" else ch for ch in text)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
