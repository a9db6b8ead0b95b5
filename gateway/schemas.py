"""The live workers' published node schemas, cached for a few seconds, and job placement.

Validating a submission needs the schemas every live worker published (``tasks.schemas``); reading
and decompressing them costs milliseconds, far more than validating one prompt. So one snapshot —
the distinct schemas, each parsed once into a ``SchemaSource``, with the live workers that serve
it — is kept for ``REFRESH_SECONDS`` and rebuilt off the event loop.

Placement follows ``comfyfarm.producer.placement`` (the same rule, on the cached sources): the
shared queue when every live schema accepts the prompt; else the own queue of a worker whose
schema does, taken in turn; when none does, every problem the newest schema found. A job for the
shared queue then goes where ``Farm.submit`` would send it: with ``COMFYFARM_AFFINITY``, to its
checkpoint's queue when a live worker consumes that queue (``producer.affinity``; the snapshot
keeps the queues the live workers consume).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import time
from collections.abc import Collection
from dataclasses import dataclass, field

from comfyfarm.tasks.affinity import affinity_queue
from comfyfarm.tasks.connect import redis_client
from comfyfarm.tasks.registry import list_workers
from comfyfarm.tasks.routing import SHARED_QUEUE, worker_queue
from comfyfarm.tasks.schemas import load_schemas
from comfyfarm.tasks.settings import Settings
from comfyfarm.workflows import Problem, SchemaSource, validate_prompt

REFRESH_SECONDS = 5.0
EMPTY_REFRESH_SECONDS = 0.5  # no schema yet: look again soon (a worker is probably starting)


@dataclass
class SchemaGroup:
    """Live workers whose ComfyUIs serve the same nodes and models."""

    source: SchemaSource
    workers: list[str]
    turn: itertools.count[int] = field(default_factory=itertools.count)


@dataclass(frozen=True)
class Placement:
    """``queue`` None: the shared queue. ``problems``: why no worker can run it (then no queue)."""

    queue: str | None
    problems: list[Problem]


class SchemaCache:
    """The farm's schema snapshot, refreshed at most every ``REFRESH_SECONDS``."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._groups: list[SchemaGroup] = []
        self._consumed: frozenset[str] = frozenset()  # queues the live workers consume
        self._sources: dict[str, SchemaSource] = {}  # digest of a schema → its parsed source
        self._read_at = float("-inf")
        self._lock = asyncio.Lock()

    async def groups(self) -> list[SchemaGroup]:
        """Newest schema first; empty when no worker has published one."""
        if time.monotonic() - self._read_at < self._ttl():
            return self._groups
        async with self._lock:
            if time.monotonic() - self._read_at >= self._ttl():
                self._groups, self._consumed = await asyncio.to_thread(self._read)
                self._read_at = time.monotonic()
        return self._groups

    def _ttl(self) -> float:
        return REFRESH_SECONDS if self._groups else EMPTY_REFRESH_SECONDS

    async def any_source(self) -> SchemaSource | None:
        groups = await self.groups()
        return groups[0].source if groups else None

    async def default_queue(self, prompt: dict[str, object]) -> str:
        """Where ``Farm.submit`` sends a job it is given no queue for: its checkpoint's queue
        with affinity on and a live worker consuming it, else the shared queue."""
        if not self._settings.affinity:
            return SHARED_QUEUE
        wanted = affinity_queue(prompt)
        if wanted is None:
            return SHARED_QUEUE
        await self.groups()  # refreshes the consumed queues with the schemas
        return wanted if wanted in self._consumed else SHARED_QUEUE

    def _read(self) -> tuple[list[SchemaGroup], frozenset[str]]:
        settings = self._settings
        client = redis_client(settings, decode_responses=False)
        try:
            published = load_schemas(client, settings.key_prefix)
            workers = list_workers(client, settings.key_prefix)
        finally:
            client.close()
        live = {worker.name for worker in workers}
        consumed = frozenset(queue for worker in workers for queue in worker.queues)
        chosen = [p for p in published if p.worker in live] or published
        by_body: dict[str, SchemaGroup] = {}
        for entry in chosen:
            body = json.dumps([entry.object_info, entry.models], sort_keys=True).encode()
            digest = hashlib.sha256(body).hexdigest()
            if digest not in by_body:
                source = self._sources.get(digest)
                if source is None:
                    source = SchemaSource.from_object_info(entry.object_info, models=entry.models)
                by_body[digest] = SchemaGroup(source, [])
            by_body[digest].workers.append(entry.worker)
        self._sources = {digest: group.source for digest, group in by_body.items()}
        return list(by_body.values()), consumed


def place(
    prompt: dict[str, object], groups: list[SchemaGroup], uploads: Collection[tuple[str, str]]
) -> Placement:
    """Where ``prompt`` can run (see the module docstring). No groups: the shared queue,
    unvalidated (the worker's ComfyUI still validates it)."""
    capable: list[SchemaGroup] = []
    refusals: list[list[Problem]] = []
    for group in groups:
        problems = validate_prompt(prompt, group.source, uploads=uploads)
        if problems:
            refusals.append(problems)
        else:
            capable.append(group)
    if refusals and not capable:
        return Placement(None, refusals[0])
    if not refusals:
        return Placement(None, [])
    workers = sorted(name for group in capable for name in group.workers)
    pick = workers[next(capable[0].turn) % len(workers)]
    return Placement(worker_queue(pick), [])
