"""The order in which a worker consumes its queues, so jobs go where their model is loaded.

Design (chosen over a producer-side router): one queue per checkpoint,
``comfyfarm.model.<slug>`` (``tasks.affinity``), consumed by every worker whose ComfyUI lists the
checkpoint. Workers *pull*; Celery's ``queue_order_strategy = "priority"`` makes one BRPOP take
from the first non-empty queue in the worker's list, so the order is the policy:

    own queue, capabilities | starving model queue | loaded model queues | shared | other models

- A worker takes the jobs of the checkpoint it loaded last while there are any, then shared
  work, and only then a job of another checkpoint (one load, after which that model is "loaded").
  Popular models keep their GPUs busy without reloads; an idle GPU still takes any job it can
  run, so no GPU idles while work waits (work-conserving, unlike a producer-side router, which
  must guess from stale registry data at submit time and cannot move a job once it is queued).
- Workers spread over the models: the other model queues come in an order of each worker's own
  (a rotation fixed by a hash of its name), those that another live worker has loaded (its
  registry entry, read with the starvation check, and only when there are two or more such
  queues to order) last, so idle GPUs facing a backlog of several models do not all load the
  same one.
- No job starves: a job waits for a worker with its model loaded at most about ``wait``
  seconds (``COMFYFARM_AFFINITY_WAIT``). Every ``wait / 10`` seconds (at least every second) a
  worker whose pool is full reads the oldest message of each model queue it does not have
  loaded (``enqueued_at`` in its header); when one is older than ``wait``, the worker
  *promotes* that queue ahead of its loaded ones, so it loads that model next. A worker with a
  free pool process skips it: it takes the next job of any queue it lists anyway, and each read
  is a command per priority list of every such queue. Promotions are rationed so a backlog of
  old jobs does not make every GPU reload at once: a Redis claim (``SET NX`` for ``wait``
  seconds) lets one worker promote a given queue per ``wait`` period, and a worker promotes at
  most one queue per ``wait`` period.
- "Loaded" is the checkpoint of the last job this worker *received*: with pipelining that job is
  in ComfyUI's queue and its checkpoint will be in memory when the job before it finishes. The
  registry publishes it (``WorkerInfo.loaded``).

The queue order is applied by the health gate (``worker.service``) from the main process's
timer: it cancels the queues from the first one out of place and adds them back in order
(kombu keeps its active queues in insertion order).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import redis

from comfyfarm.tasks.affinity import checkpoints
from comfyfarm.tasks.registry import list_workers
from comfyfarm.tasks.routing import SHARED_QUEUE, model_queue, queue_keys

log = logging.getLogger(__name__)

CHECK_INTERVAL = 1.0
CLAIM_KEY = "affinity:promote:"


class AffinityOrder:
    """One worker's consume order (see the module docstring). Thread-safe: the Celery
    ``task_received`` signal and the health gate's timer both run in the main process."""

    def __init__(self, base: Sequence[str], *, name: str, wait: float, keep: int = 1) -> None:
        self.base = [q for q in base if q != SHARED_QUEUE]
        self.name = name
        self.wait = wait
        self.keep = keep
        self.available: dict[str, str] = {}  # model queue -> checkpoint name
        self.loaded: list[str] = []  # checkpoint names, most recent first
        self.promoted: str | None = None
        self.elsewhere: set[str] = set()  # model queues other live workers have loaded
        self._offset = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)
        self._promoted_at = 0.0
        self._last_promotion = float("-inf")
        self._last_check = float("-inf")
        self._lock = threading.Lock()

    def set_checkpoints(self, names: Iterable[str]) -> None:
        """The checkpoints this worker's ComfyUI lists (its model queues)."""
        with self._lock:
            self.available = {model_queue(name): name for name in names}

    def received(self, prompt: Mapping[str, Any]) -> None:
        """A job was handed to this worker: its checkpoints are (about to be) loaded."""
        names = checkpoints(prompt)
        if not names:
            return
        with self._lock:
            self.loaded = list(dict.fromkeys([*names, *self.loaded]))[: self.keep]
            if self.promoted is not None and self.promoted in {model_queue(n) for n in names}:
                self.promoted = None

    def order(self) -> list[str]:
        """The queues to consume, in order."""
        with self._lock:
            loaded = [model_queue(name) for name in self.loaded]
            loaded = [q for q in loaded if q in self.available]
            first = [self.promoted] if self.promoted in self.available else []
            rest = sorted(q for q in self.available if q not in loaded and q not in first)
            if rest:
                turn = self._offset % len(rest)
                rest = rest[turn:] + rest[:turn]
                rest.sort(key=lambda q: q in self.elsewhere)  # stable: keeps the rotation
            ordered = [*self.base, *first, *loaded, SHARED_QUEUE, *rest]
        return list(dict.fromkeys(ordered))

    def check_starving(
        self, rds: redis.Redis, prefix: str, now: float | None = None, *, busy: bool = True
    ) -> None:
        """Promote a model queue whose oldest job waited longer than ``wait`` (rationed);
        ``busy``: every pool process of this worker has a job (otherwise nothing can starve
        behind it)."""
        stamp = time.time() if now is None else now
        if stamp - self._last_check < max(CHECK_INTERVAL, self.wait / 10):
            return
        self._last_check = stamp
        with self._lock:
            loaded = {model_queue(name) for name in self.loaded}
            unloaded = [q for q in self.available if q not in loaded and q != self.promoted]
        if len(unloaded) > 1:  # only then is there an order among them to choose
            try:
                others = [w for w in list_workers(rds, prefix) if w.name != self.name]
            except redis.RedisError:
                others = []
            with self._lock:
                self.elsewhere = {model_queue(n) for w in others for n in w.loaded}
        with self._lock:
            if self.promoted is not None and stamp - self._promoted_at > self.wait:
                self.promoted = None  # nothing came of it: another worker took those jobs
            if not busy or self.promoted is not None or stamp - self._last_promotion < self.wait:
                return
            loaded = {model_queue(name) for name in self.loaded}
            candidates = [q for q in self.available if q not in loaded]
        try:
            ages = oldest_waits(rds, prefix, candidates, stamp)
        except redis.RedisError as exc:
            log.warning("could not read the model queues: %s", exc)
            return
        for queue, age in sorted(ages.items(), key=lambda item: -item[1]):
            if age <= self.wait:
                break
            claim = f"{prefix}{CLAIM_KEY}{queue}"
            if rds.set(claim, self.name, nx=True, px=int(self.wait * 1000)):
                with self._lock:
                    self.promoted, self._promoted_at = queue, stamp
                    self._last_promotion = stamp
                log.info("affinity: %s waited %.0f s, loading its model next", queue, age)
                return


def oldest_waits(
    rds: redis.Redis, prefix: str, queues: Sequence[str], now: float
) -> dict[str, float]:
    """Seconds the oldest message of each non-empty queue has waited (from ``enqueued_at`` in
    the farm header; a message without one counts as just enqueued)."""
    keys = [(queue, key) for queue in queues for key in queue_keys(prefix, queue).values()]
    if not keys:
        return {}
    with rds.pipeline(transaction=False) as pipe:
        for _, key in keys:
            pipe.lindex(key, -1)  # LPUSH in, BRPOP out: the oldest is last
        heads = pipe.execute()
    waits: dict[str, float] = {}
    for (queue, _), raw in zip(keys, heads, strict=True):
        if raw is None:
            continue
        waits[queue] = max(waits.get(queue, 0.0), now - _enqueued_at(raw, now))
    return waits


def _enqueued_at(raw: bytes | str, default: float) -> float:
    try:
        message = json.loads(raw)
        value = message["headers"]["comfyfarm"]["enqueued_at"]
    except (ValueError, KeyError, TypeError):
        return default
    return (
        float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default
    )


def apply_order(
    consumer: Any, current: list[str], wanted: list[str], declared: set[str] | None = None
) -> list[str]:
    """Re-subscribe ``consumer`` so it consumes ``wanted`` in order; returns what it consumes.
    Queues in ``declared`` are added back without declaring them again (see ``add_queue``);
    every queue added is put in it."""
    keep = 0
    while keep < min(len(current), len(wanted)) and current[keep] == wanted[keep]:
        keep += 1
    for queue in current[keep:]:
        consumer.cancel_task_queue(queue)
    for queue in wanted[keep:]:
        add_queue(consumer, queue, declared)
    return list(wanted)


def add_queue(consumer: Any, queue: str, declared: set[str] | None = None) -> None:
    """``consumer.add_task_queue(queue)``, without kombu's declare if ``queue`` is in
    ``declared``: a declare counts the messages of each of the queue's ten priority lists and
    writes its bindings (about fourteen Redis commands), and the queue is only being moved in
    the consume order (BRPOP reads the lists; producers declare what they publish to)."""
    task_consumer = getattr(consumer, "task_consumer", None)
    if declared is None or queue not in declared or task_consumer is None:
        consumer.add_task_queue(queue)
    else:
        before, task_consumer.auto_declare = task_consumer.auto_declare, False
        try:
            consumer.add_task_queue(queue)
        finally:
            task_consumer.auto_declare = before
    if declared is not None:
        declared.add(queue)
