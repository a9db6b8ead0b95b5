"""What a worker tells the farm about itself: its registry entry and its ComfyUI's node schemas.

Both are written from the health monitor's thread in the worker's main process after every
check: the registry entry (``tasks.keys.register_worker``: ComfyUI URL, health, queues, the job
running now) as a TTL heartbeat, and the node schemas (``tasks.schemas.publish_schema``) whenever
ComfyUI becomes healthy.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import redis
from celery.utils.nodenames import host_format
from celery.worker import state as worker_state

from comfyfarm.comfy.client import ComfyClient
from comfyfarm.comfy.errors import ComfyError
from comfyfarm.comfy.schemas import fetch_schemas
from comfyfarm.tasks.keys import register_worker, unregister_worker
from comfyfarm.tasks.schemas import publish_schema

log = logging.getLogger(__name__)

REGISTRY_TTL = 30.0
#: Seconds between regular registry writes while nothing changes (a third of the TTL).
REGISTRY_REFRESH = 10.0


class WorkerRegistry:
    """This worker's entry in the farm registry (``comfyfarm.tasks.keys.register_worker``).

    Written by the health monitor's heartbeat in the main process, where Celery tracks the
    running request (``celery.worker.state.active_requests``), so ``current_job`` is the job the
    pool child is running now; the health gate's timer asks for an early beat when it changes.
    ``holding`` (``worker.takeover.Holdings.tags``) lists the messages it holds unacknowledged.

    The health check runs every two seconds, but the entry is written only every ``refresh``
    seconds (a third of its TTL: two commands, the entry and the index of names), or at once,
    with one command, when what it says changed (health, the store, the running job, the
    queues) — ``holding`` aside: a delivery only needs to be listed within the takeover's grace
    (the TTL), which the regular write does.
    """

    def __init__(
        self,
        rds: redis.Redis,
        prefix: str,
        name: str,
        *,
        comfy_url: str,
        queues: list[str],
        capabilities: list[str],
        ttl: float = REGISTRY_TTL,
        holding: Callable[[], list[str] | None] | None = None,
        dynamic: Callable[[], dict[str, Any]] | None = None,
        refresh: float = REGISTRY_REFRESH,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rds = rds
        self._prefix = prefix
        self._name = name
        self._ttl = ttl
        self.node = host_format(f"{name}@%h")  # what Celery's ping answers with
        self._static = {
            "node": self.node, "comfy_url": comfy_url, "queues": queues,
            "capabilities": capabilities, "started_at": time.time(),
            "host": socket.gethostname(), "pid": os.getpid(),
        }  # fmt: skip
        self._written_job: str | None = None
        self._holding = holding
        self._dynamic = dynamic  # fields that change while it runs (affinity: queues, loaded)
        self._refresh, self._clock = refresh, clock
        self._refreshed_at = float("-inf")  # when the entry and the index were last written
        self._said: dict[str, Any] | None = None  # what the entry last said (holding aside)

    def beat(self, healthy: bool, *, storage: str = "ok") -> None:
        """Register with ComfyUI's verdict and the store's (``storage``: "ok" or why it cannot
        be written); ``health`` is "ok", "down" (ComfyUI) or "storage" (the store)."""
        job = self._written_job = current_job()  # even if the write fails: no poke storm
        health = "down" if not healthy else "ok" if storage == "ok" else "storage"
        entry = {**self._static, "health": health, "storage": storage, "current_job": job}
        if self._dynamic is not None:
            entry.update(self._dynamic())
        now, said = self._clock(), dict(entry)
        due = now - self._refreshed_at >= self._refresh
        if not due and said == self._said:
            return
        if self._holding is not None:
            entry["holding"] = self._holding()
        register_worker(self._rds, self._prefix, self._name, entry, ttl=self._ttl, index=due)
        self._said = said
        if due:
            self._refreshed_at = now

    def outdated(self) -> bool:
        """Whether the running job differs from the one the registry was last told about."""
        return current_job() != self._written_job

    def remove(self) -> None:
        try:
            unregister_worker(self._rds, self._prefix, self._name)
        except redis.RedisError as exc:  # the entry expires on its own
            log.warning("could not remove the registry entry: %s", exc)


class SchemaPublisher:
    """Publishes what this worker's ComfyUI serves (``/object_info`` and the model lists) with
    ``tasks.schemas.publish_schema``, so producers validate jobs without reaching a ComfyUI.

    Published on the first healthy check and again whenever ComfyUI comes back (it may have
    restarted with other nodes or models); a failed attempt is retried at the next check.
    """

    def __init__(self, client: ComfyClient, rds: redis.Redis, prefix: str, name: str) -> None:
        self._client = client
        self._rds = rds
        self._prefix = prefix
        self._name = name
        self._published = False
        self.models: dict[str, list[str]] = {}  # the model lists last published

    def update(self, healthy: bool) -> None:
        if not healthy:
            self._published = False
            return
        if self._published:
            return
        url = self._client.display_url  # what is shown and stored: no credentials
        try:
            schemas = fetch_schemas(self._client)
            if schemas.missing:
                # Partial model lists would make producers refuse jobs this ComfyUI can run.
                log.warning("could not read the model lists %s of %s; publishing at the next "
                            "check", ", ".join(schemas.missing), url)  # fmt: skip
                return
            publish_schema(
                self._rds, self._prefix, self._name, comfy_url=url,
                object_info=schemas.object_info, models=schemas.models,
            )  # fmt: skip
        except (ComfyError, redis.RedisError) as exc:
            log.warning("could not publish the node schemas of %s: %s", url, exc)
            return
        self._published = True
        self.models = {folder: list(names) for folder, names in schemas.models.items()}
        log.info("published %d node schemas of %s", len(schemas.object_info), url)


def current_job() -> str | None:
    """The id of the job this worker runs now (main process view), or None when idle."""
    try:
        running = list(worker_state.active_requests)
    except RuntimeError:  # the set changed under us (another thread); the next beat catches up
        return None
    ids = sorted(str(request.id) for request in running if request.id)
    return ids[0] if ids else None
