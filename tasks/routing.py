"""Queue names and job priorities.

Naming (all queues start with ``comfyfarm``; Redis keys additionally get the key prefix):

- ``comfyfarm``                 the shared queue: every worker consumes it (``SHARED_QUEUE``).
- ``comfyfarm.worker.<name>``   one worker's own queue, for jobs pinned to one ComfyUI instance
                                (``worker_queue(name)``; ``name`` is the worker's short name, e.g.
                                ``gpu0``).
- ``comfyfarm.cap.<cap>``       jobs that need a capability (a model family, VRAM class, custom
                                node pack), consumed by every worker that declares it
                                (``capability_queue(cap)``, e.g. ``comfyfarm.cap.sdxl``).
- ``comfyfarm.model.<slug>``    jobs that load one checkpoint (``model_queue(ckpt_name)``), with
                                ``COMFYFARM_AFFINITY``: every worker whose ComfyUI lists the
                                checkpoint consumes it, those that have it loaded first
                                (``comfyfarm.worker.affinity``).

Workers list their queues own-queue first, capabilities next, shared last; the app uses the Redis
``queue_order_strategy = "priority"``, so a worker drains its own queue before shared work.

Priorities: a job's priority is 0 (lowest) … 9 (most urgent), default 5. Redis pops *lower* Celery
priorities first, so the message carries ``9 - priority``; each priority has its own Redis list
(``queue_keys``).
"""

from __future__ import annotations

import hashlib
import re

from comfyfarm.tasks.errors import QueueNameError

SHARED_QUEUE = "comfyfarm"
WORKER_QUEUE_PREFIX = "comfyfarm.worker."
CAPABILITY_QUEUE_PREFIX = "comfyfarm.cap."
MODEL_QUEUE_PREFIX = "comfyfarm.model."

#: kombu's separator between a queue name and its priority step (pinned in the app config).
PRIORITY_SEP = "\x06\x16"
#: Celery priorities 0..9, one Redis list each.
PRIORITY_STEPS: tuple[int, ...] = tuple(range(10))
MIN_PRIORITY = 0
MAX_PRIORITY = 9
DEFAULT_PRIORITY = 5

_WORKER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}")
_CAPABILITY = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
_MODEL_SLUG = re.compile(r"[a-z0-9][a-z0-9_.-]{0,47}-[0-9a-f]{8}")
_NOT_SLUG = re.compile(r"[^a-z0-9_.-]+")


def worker_queue(name: str) -> str:
    """The queue of one worker: ``comfyfarm.worker.<name>``.

    ``name``: letters, digits, ``_ . @ -``, at most 100 characters. Raises ``QueueNameError``.
    """
    if not _WORKER_NAME.fullmatch(name):
        raise QueueNameError(
            name=name,
            reason="a worker name is 1-100 of A-Z a-z 0-9 _ . @ - (not starting with a symbol)",
        )
    return WORKER_QUEUE_PREFIX + name


def capability_queue(cap: str) -> str:
    """The queue of one capability: ``comfyfarm.cap.<cap>``.

    ``cap``: lowercase letters, digits, ``_ . -``, at most 64 characters. Raises ``QueueNameError``.
    """
    if not _CAPABILITY.fullmatch(cap):
        raise QueueNameError(
            name=cap, reason="a capability is 1-64 of a-z 0-9 _ . - (not starting with a symbol)"
        )
    return CAPABILITY_QUEUE_PREFIX + cap


def model_queue(ckpt_name: str) -> str:
    """The queue of the jobs that load checkpoint ``ckpt_name``: ``comfyfarm.model.<slug>``,
    the slug a readable part of the name plus 8 hex digits of its SHA-256 (names that differ only
    in case or punctuation get different queues)."""
    if not isinstance(ckpt_name, str) or not ckpt_name or len(ckpt_name) > 1024:
        raise QueueNameError(
            name=str(ckpt_name)[:100], reason="a checkpoint name is 1-1024 characters"
        )
    readable = _NOT_SLUG.sub("-", ckpt_name.lower()).strip("-_.")[:47] or "model"
    digest = hashlib.sha256(ckpt_name.encode()).hexdigest()[:8]
    return f"{MODEL_QUEUE_PREFIX}{readable}-{digest}"


def check_queue(queue: str) -> str:
    """``queue`` if it is one of the farm's queues (shared, a worker's, a capability's, a
    model's)."""
    if queue == SHARED_QUEUE:
        return queue
    if queue.startswith(MODEL_QUEUE_PREFIX):
        if _MODEL_SLUG.fullmatch(queue[len(MODEL_QUEUE_PREFIX) :]):
            return queue
        raise QueueNameError(name=queue, reason="a model queue comes from model_queue(ckpt_name)")
    if queue.startswith(WORKER_QUEUE_PREFIX):
        return worker_queue(queue[len(WORKER_QUEUE_PREFIX) :])
    if queue.startswith(CAPABILITY_QUEUE_PREFIX):
        return capability_queue(queue[len(CAPABILITY_QUEUE_PREFIX) :])
    raise QueueNameError(
        name=queue,
        reason=f"not a farm queue: use {SHARED_QUEUE!r}, worker_queue(name) or "
        "capability_queue(cap)",
    )


def celery_priority(priority: int | None) -> int:
    """The Celery (Redis) message priority for a farm priority (0 lowest … 9 most urgent)."""
    if priority is None:
        priority = DEFAULT_PRIORITY
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ValueError(f"priority must be an integer 0..9, not {priority!r}")
    if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise ValueError(f"priority must be 0 (lowest) .. 9 (most urgent), not {priority}")
    return MAX_PRIORITY - priority


def farm_priority(celery_priority: int) -> int:
    """Inverse of ``celery_priority``."""
    return MAX_PRIORITY - celery_priority


def queue_keys(prefix: str, queue: str) -> dict[int, str]:
    """Farm priority → the Redis list key that holds that priority's messages of ``queue``."""
    keys = {}
    for step in PRIORITY_STEPS:
        name = queue if step == 0 else f"{queue}{PRIORITY_SEP}{step}"
        keys[farm_priority(step)] = prefix + name
    return keys
