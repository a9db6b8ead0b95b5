"""A job delivered more than once: which copy runs it, and how a skipped copy keeps watch.

Redis re-delivers a job whose message stayed unacknowledged past the visibility timeout, whether
or not its worker is still busy with it, and a pool process killed mid-job hands its message back
at once. Every copy first claims the job's lease (``worker.policy.claim_lease``): a lease that its
holder keeps renewing means the job runs elsewhere, one that is released or expires means its
holder is gone.

A copy that finds the job running elsewhere is acknowledged — but then nothing would remain of
the job in Redis if that worker died afterwards (its own message was the one re-delivered). So
the copy first sends a *watch*: the same job again, marked with ``WATCH_HEADER``, due after
``watch_countdown`` seconds. A watch that finds the job finished ends quietly; one that finds
the lease still renewed sends the next watch; one that finds the lease gone takes the job over
(the submission ledger then finds its prompt on the ComfyUI it went to: followed, not re-run).
"""

from __future__ import annotations

from typing import Any

from celery import Task

from comfyfarm.tasks.names import RUN_JOB
from comfyfarm.tasks.routing import SHARED_QUEUE
from comfyfarm.tasks.settings import Settings

#: Message header of a watch copy.
WATCH_HEADER = "comfyfarm_watch"
#: Longest pause between two watches of a long job (when the visibility timeout allows it).
MAX_WATCH_SECONDS = 60.0


def is_watch(task: Task) -> bool:
    """Whether this delivery is a watch copy."""
    return bool(task.request.get(WATCH_HEADER))


def watch_countdown(settings: Settings) -> float:
    """Seconds until the next watch: at least twice the lease TTL (a dead holder's lease has
    expired by then), at most ``MAX_WATCH_SECONDS``, and always within half the visibility
    timeout, so the waiting watch is never re-delivered as yet another copy."""
    return min(settings.visibility_timeout / 2, max(2 * settings.lease_seconds, MAX_WATCH_SECONDS))


def send_watch(task: Task, payload: dict[str, Any], settings: Settings) -> float:
    """Send the watch of the job this copy skipped; returns its countdown."""
    countdown = watch_countdown(settings)
    delivery = task.request.delivery_info or {}
    task.app.send_task(
        RUN_JOB,
        args=[payload],
        task_id=task.request.id,
        countdown=countdown,
        queue=SHARED_QUEUE,
        priority=delivery.get("priority"),
        retries=task.request.retries,
        headers={WATCH_HEADER: 1},
    )
    return countdown
