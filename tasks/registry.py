"""The worker registry: each worker announces itself and its ComfyUI with a TTL heartbeat.

A worker calls ``register_worker`` every few seconds (the TTL is a few heartbeats); an entry that
is not refreshed disappears, so ``list_workers`` shows live workers only. Producers use it for
``farm.status()``: which ComfyUI each worker drives, its health, capabilities and current job.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import redis

from comfyfarm.tasks.keyspace import worker_key, workers_index_key

DEFAULT_TTL_SECONDS = 30.0


@dataclass(frozen=True, kw_only=True)
class WorkerInfo:
    """One worker as it describes itself.

    ``name``: short name (``gpu0``), also in its queue name. ``node``: the Celery node name
    (``gpu0@host``) that answers ``ping``. ``health``: ``ok`` | ``degraded`` | ``down`` (its
    ComfyUI as the worker last saw it) or another short word. ``heartbeat``: ``time.time()`` of the
    last registration. ``holding``: delivery tags of the broker messages it holds unacknowledged
    (``worker.takeover`` restores early a message that no live worker holds); None if the worker
    does not say. ``loaded``: the checkpoints its ComfyUI has loaded (or is about to load: those
    of the last job it took), most recent first.
    """

    name: str
    node: str = ""
    comfy_url: str = ""
    health: str = "ok"
    capabilities: list[str] = field(default_factory=list)
    queues: list[str] = field(default_factory=list)
    current_job: str | None = None
    holding: list[str] | None = None
    loaded: list[str] = field(default_factory=list)
    heartbeat: float = 0.0
    started_at: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "node": self.node,
            "comfy_url": self.comfy_url,
            "health": self.health,
            "capabilities": list(self.capabilities),
            "queues": list(self.queues),
            "current_job": self.current_job,
            "holding": None if self.holding is None else list(self.holding),
            "loaded": list(self.loaded),
            "heartbeat": self.heartbeat,
            "started_at": self.started_at,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkerInfo:
        return cls(
            name=str(data["name"]),
            node=str(data.get("node", "")),
            comfy_url=str(data.get("comfy_url", "")),
            health=str(data.get("health", "")),
            capabilities=[str(c) for c in data.get("capabilities", [])],
            queues=[str(q) for q in data.get("queues", [])],
            current_job=data.get("current_job"),
            holding=_tags(data.get("holding")),
            loaded=[str(name) for name in data.get("loaded", []) if isinstance(name, str)],
            heartbeat=float(data.get("heartbeat", 0.0)),
            started_at=float(data.get("started_at", 0.0)),
            extra=dict(data.get("extra", {})),
        )


def register_worker(
    client: redis.Redis,
    prefix: str,
    name: str,
    info: WorkerInfo | Mapping[str, Any],
    *,
    ttl: float = DEFAULT_TTL_SECONDS,
    now: float | None = None,
    index: bool = True,
) -> WorkerInfo:
    """Write (or refresh) worker ``name``'s entry with a heartbeat of ``now``; returns what was
    stored. ``info`` is a WorkerInfo or a mapping of its fields (unknown keys go to ``extra``;
    a boolean ``healthy`` becomes ``health`` "ok"/"down"). ``index=False`` leaves the index of
    names alone (one command instead of two): for updates between regular beats, which put the
    name back in case a reader pruned it while the entry had lapsed."""
    stamp = time.time() if now is None else now
    base = info.to_dict() if isinstance(info, WorkerInfo) else _fields_from_mapping(info)
    stored = WorkerInfo.from_dict({**base, "name": name, "heartbeat": stamp})
    with client.pipeline(transaction=False) as pipe:
        pipe.set(worker_key(prefix, name), json.dumps(stored.to_dict()), px=int(ttl * 1000))
        if index:
            pipe.zadd(workers_index_key(prefix), {name: stamp})
        pipe.execute()
    return stored


def _fields_from_mapping(info: Mapping[str, Any]) -> dict[str, Any]:
    known = {spec.name for spec in fields(WorkerInfo)}
    data = {key: value for key, value in info.items() if key in known}
    extra = {key: value for key, value in info.items() if key not in known}
    if "healthy" in extra and "health" not in data:
        data["health"] = "ok" if extra.pop("healthy") else "down"
    data["extra"] = {**dict(data.get("extra") or {}), **extra}
    return data


def unregister_worker(client: redis.Redis, prefix: str, name: str) -> None:
    """Remove a worker's entry at once (clean shutdown)."""
    with client.pipeline(transaction=False) as pipe:
        pipe.delete(worker_key(prefix, name))
        pipe.zrem(workers_index_key(prefix), name)
        pipe.execute()


def list_workers(client: redis.Redis, prefix: str) -> list[WorkerInfo]:
    """Live workers, by name. Index entries whose TTL key expired are pruned on the way."""
    index = workers_index_key(prefix)
    names = [_text(n) for n in client.zrange(index, 0, -1) if isinstance(n, str | bytes)]
    if not names:
        return []
    raw = client.mget([worker_key(prefix, name) for name in names])
    workers, gone = [], []
    for name, value in zip(names, raw, strict=True):
        if value is None:
            gone.append(name)
            continue
        try:
            workers.append(WorkerInfo.from_dict(json.loads(value)))
        except (ValueError, KeyError, TypeError):
            gone.append(name)
    if gone:
        client.zrem(index, *gone)
    return sorted(workers, key=lambda w: w.name)


def _tags(value: Any) -> list[str] | None:
    return [str(tag) for tag in value] if isinstance(value, list) else None


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
