"""Sending each job to the queue of its checkpoint, when ``COMFYFARM_AFFINITY`` is on.

A job that loads checkpoint X goes to ``comfyfarm.model.<X>`` (``tasks.affinity``) — but only if
some live worker consumes that queue (workers list it in the registry once their ComfyUI lists
X): a job for a model queue nobody consumes would wait forever, so it goes to the shared queue
instead (and the worker's ComfyUI then says what is wrong with it). Jobs with no checkpoint, and
jobs given an explicit queue, are not touched.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

from comfyfarm.tasks.affinity import affinity_queue
from comfyfarm.tasks.registry import list_workers
from comfyfarm.tasks.spec import JobSpec


def affinity_queues(specs: Sequence[JobSpec], rds: redis.Redis, prefix: str) -> list[str | None]:
    """Per spec: its model queue when a live worker consumes it, else None (the shared queue)."""
    wanted = [affinity_queue(spec.prompt) for spec in specs]
    if not any(wanted):
        return wanted
    consumed = {queue for worker in list_workers(rds, prefix) for queue in worker.queues}
    return [queue if queue in consumed else None for queue in wanted]
