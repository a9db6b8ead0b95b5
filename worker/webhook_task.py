"""The webhook task: a job's completion webhook, delivered apart from the job.

The job's pool process only enqueues it — one small message on the shared queue at the highest
priority — and goes on to the next job, so a receiver that is slow or down never holds a GPU's
pipeline slot. Each attempt is one POST (``comfyfarm.worker.webhook.post_once``, at most ``TIMEOUT``
seconds); a failed one is retried after 2, 4, 8 … 64 s as a Celery countdown, which waits in a
worker's memory, not in a pool process. After ``ATTEMPTS`` attempts, or a 4xx answer, it gives up
with a warning. Delivery is at least once: receivers de-duplicate by ``Comfyfarm-Webhook-Id``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from celery import Celery, Task

from comfyfarm.tasks.names import DELIVER_WEBHOOK
from comfyfarm.tasks.routing import MAX_PRIORITY, SHARED_QUEUE, celery_priority
from comfyfarm.worker.webhook import Attempt, post_once

log = logging.getLogger(__name__)

ATTEMPTS = 8
MAX_BACKOFF = 64.0
PRIORITY = celery_priority(MAX_PRIORITY)


def enqueue(app: Celery, url: str, result: dict[str, Any], *, job_id: str) -> None:
    """Hand the webhook of a finished job to whichever worker is free first."""
    payload = {"url": url, "job_id": job_id, "result": result}
    app.send_task(DELIVER_WEBHOOK, args=[payload], queue=SHARED_QUEUE, priority=PRIORITY)


def backoff(retries: int, *, cap: float = MAX_BACKOFF) -> float:
    """Seconds before attempt ``retries + 2``: 2, 4, 8 ... capped at ``MAX_BACKOFF`` (and at
    ``cap``, COMFYFARM_MAX_RETRY_DELAY)."""
    return min(MAX_BACKOFF, cap, 2.0 * 2.0**retries)


def register(app: Celery, *, secret: str | None, max_delay: float = MAX_BACKOFF) -> Task:
    """Register the webhook task on ``app``; ``secret`` signs every call (never logged);
    ``max_delay`` caps the wait between attempts."""

    @app.task(name=DELIVER_WEBHOOK, bind=True, acks_late=True, ignore_result=True)  # type: ignore[untyped-decorator]
    def deliver_webhook(self: Task, payload: dict[str, Any]) -> str:
        job_id = str(payload["job_id"])
        body = json.dumps(payload["result"], sort_keys=True).encode()
        outcome = post_once(str(payload["url"]), body, job_id=job_id, secret=secret)
        retries = self.request.retries
        if outcome is Attempt.FAILED and retries + 1 < ATTEMPTS:
            raise self.retry(countdown=backoff(retries, cap=max_delay), max_retries=ATTEMPTS - 1,
                             queue=SHARED_QUEUE, priority=PRIORITY)  # fmt: skip
        if outcome is Attempt.FAILED:
            log.warning("webhook for job %s not delivered after %d attempts", job_id, ATTEMPTS)
        return outcome.value

    return deliver_webhook
