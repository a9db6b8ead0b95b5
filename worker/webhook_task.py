"""The webhook task: a job's completion webhook, delivered apart from the job.

The job's pool process only enqueues it — one small message (job id and URL) on the shared
queue at the highest priority — and goes on to the next job. Whichever worker takes the message
delivers it on a thread of its main process (``worker.webhook_sender``: the task's Celery
strategy), never in a pool slot, so a receiver that is slow or down never holds a GPU. Each
attempt is one POST of the job's *stored* result (``comfyfarm.worker.webhook.post_once``, at
most ``TIMEOUT`` seconds in total); a failed one is sent again after 2, 4, 8 … 64 s (capped by
COMFYFARM_MAX_RETRY_DELAY) as a new message with a countdown. After ``ATTEMPTS`` attempts, or a
4xx answer, it gives up with a warning. Delivery is at least once: receivers de-duplicate by
``Comfyfarm-Webhook-Id``.

Flower shows the task's arguments as ``argsrepr``: the job id and the receiver's scheme and
host only (webhook URLs often carry tokens in their path or query).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from celery import Celery, Task

from comfyfarm.tasks.names import DELIVER_WEBHOOK
from comfyfarm.tasks.routing import MAX_PRIORITY, SHARED_QUEUE, celery_priority

log = logging.getLogger(__name__)

ATTEMPTS = 8
MAX_BACKOFF = 64.0
PRIORITY = celery_priority(MAX_PRIORITY)
STRATEGY = "comfyfarm.worker.webhook_sender:strategy"


def enqueue(app: Celery, url: str, result: dict[str, Any], *, job_id: str) -> None:
    """Hand the webhook of a finished job to whichever worker is free first. ``result`` is not
    sent: the worker that delivers signs the result stored for ``job_id``."""
    send(app, {"url": url, "job_id": job_id}, retries=0, countdown=None)


def send(app: Celery, payload: dict[str, Any], *, retries: int, countdown: float | None) -> None:
    """Publish one delivery message (attempt ``retries + 1``); the app rings its queue's
    doorbell (``tasks.doorbell.RingingAMQP``) so an idle worker takes it at once."""
    with app.producer_or_acquire() as producer:
        app.send_task(
            DELIVER_WEBHOOK,
            args=[payload],
            queue=SHARED_QUEUE,
            priority=PRIORITY,
            retries=retries,
            countdown=countdown,
            argsrepr=describe(payload),
            kwargsrepr="{}",
            producer=producer,
        )


def describe(payload: dict[str, Any]) -> str:
    """What Flower shows: ``job <id> → https://host/…`` (no path, query or credentials)."""
    try:
        parts = urlsplit(str(payload.get("url", "")))
        host = parts.hostname or "?"
        shown = f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}/…"
    except ValueError:
        shown = "<unparseable URL>"
    return f"job {payload.get('job_id')} → {shown}"


def backoff(retries: int, *, cap: float = MAX_BACKOFF) -> float:
    """Seconds before attempt ``retries + 2``: 2, 4, 8 ... capped at ``MAX_BACKOFF`` (and at
    ``cap``, COMFYFARM_MAX_RETRY_DELAY)."""
    return min(MAX_BACKOFF, cap, 2.0 * 2.0**retries)


def register(app: Celery) -> Task:
    """Register the webhook task on ``app``; its messages are handled by ``STRATEGY`` in the
    worker's main process (install a ``webhook_sender.WebhookSender`` first)."""

    @app.task(
        name=DELIVER_WEBHOOK,
        bind=True,
        acks_late=True,
        ignore_result=True,
        Strategy=STRATEGY,
        shared=False,
    )  # type: ignore[untyped-decorator]
    def deliver_webhook(self: Task, payload: dict[str, Any]) -> str:
        # Only reached if a worker runs it without the strategy (never in a comfyfarm worker).
        raise RuntimeError("deliver_webhook runs on the webhook sender, not in the pool")

    return deliver_webhook
