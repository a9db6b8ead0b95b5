"""Webhook deliveries on threads of the worker's main process: never in a GPU's pool slot.

The ``deliver_webhook`` task used to run in the job pool at top priority, so a receiver that
hangs held a slot meant for a prompt (30 × 200 ms jobs went from 6.2 s to 146.8 s). Now its
messages never reach the pool: the task's Celery *strategy* (what the consumer calls for each
message) is ``strategy`` below, which hands the message to ``WebhookSender``'s few threads and
raises the consumer's prefetch by one while it holds it, so jobs keep flowing at full depth.

Each attempt (``worker.webhook.post_once``) has a total deadline. A failed one is sent again as
a new message with a countdown (2, 4, 8 … s, at most ``COMFYFARM_MAX_RETRY_DELAY``); the message
of the attempt is acknowledged when the attempt is over, so a worker that dies mid-delivery
leaves it to be re-delivered (at least once; receivers de-duplicate by the job id).

Only what the farm produced is signed: the body is the job's stored result
(``job_result_key``), read from Redis, never the body in the message — otherwise anyone who can
write to the broker could have any body signed with the farm's secret. A message for a job with
no stored result is dropped with a warning.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import redis
from celery import Celery

from comfyfarm.tasks.connect import redis_client
from comfyfarm.tasks.keys import job_result_key
from comfyfarm.tasks.settings import Settings
from comfyfarm.worker.webhook import Attempt, post_once

log = logging.getLogger(__name__)

THREADS = 4


class WebhookSender:
    """Delivers webhooks of this worker on its own threads (see the module docstring)."""

    def __init__(self, app: Celery, settings: Settings, *, threads: int = THREADS) -> None:
        self.app = app
        self.settings = settings
        self._threads = threads
        self._executor: ThreadPoolExecutor | None = None
        self._redis: redis.Redis | None = None
        self._lock = threading.Lock()

    def submit(self, payload: Any, retries: int, done: Callable[[], None]) -> None:
        """Deliver on a sender thread; ``done`` is called when the attempt is over."""
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self._threads, thread_name_prefix="webhook")
            executor = self._executor
        executor.submit(self._deliver, payload, retries, done)

    def _deliver(self, payload: Any, retries: int, done: Callable[[], None]) -> None:
        try:
            outcome = self.attempt(payload)
            if outcome is Attempt.FAILED:
                self._again(payload, retries)
        except Exception:  # a sender thread must survive anything one delivery does
            log.exception("webhook delivery failed unexpectedly")
        finally:
            done()

    def attempt(self, payload: Any) -> Attempt | None:
        """One POST of the stored result of ``payload["job_id"]`` to ``payload["url"]``;
        None when there is nothing the farm produced to send."""
        job_id = str(payload.get("job_id", "")) if isinstance(payload, dict) else ""
        url = payload.get("url") if isinstance(payload, dict) else None
        body = self._stored_result(job_id) if job_id else None
        if body is None or not isinstance(url, str):
            log.warning(
                "webhook message for job %r refused: the farm has no result for it "
                "(only results the farm wrote are signed)",
                job_id[:80],
            )
            return None
        return post_once(url, body, job_id=job_id, secret=self.settings.webhook_secret)

    def _stored_result(self, job_id: str) -> bytes | None:
        if self._redis is None:
            self._redis = redis_client(self.settings)
        value = self._redis.get(job_result_key(self.settings.key_prefix, job_id))
        if isinstance(value, str):
            return value.encode()
        return value if isinstance(value, bytes) else None

    def _again(self, payload: dict[str, Any], retries: int) -> None:
        from comfyfarm.worker import webhook_task  # the task module imports this one

        if retries + 1 >= webhook_task.ATTEMPTS:
            job_id = payload.get("job_id")
            log.warning("webhook for job %s not delivered after %d attempts", job_id, retries + 1)
            return
        countdown = webhook_task.backoff(retries, cap=self.settings.max_retry_delay)
        webhook_task.send(self.app, payload, retries=retries + 1, countdown=countdown)

    def shutdown(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=False)


#: The sender of this worker process (set by ``install``; the strategy needs it).
_sender: WebhookSender | None = None


def install(sender: WebhookSender) -> None:
    global _sender
    _sender = sender


def strategy(task: Any, app: Celery, consumer: Any, **_: Any) -> Callable[..., None]:
    """The Celery strategy of ``deliver_webhook``: messages go to the sender, not the pool."""

    def handle(message: Any, body: Any, ack: Any, reject: Any, callbacks: Any, **__: Any) -> None:
        sender = _sender
        if sender is None:
            raise RuntimeError("webhook_sender.install() was not called")
        args, _kwargs, _embed = message.payload if body is None else body
        headers = message.headers if isinstance(message.headers, dict) else {}
        retries = int(headers.get("retries") or 0)
        consumer.qos.increment_eventually()  # held here, not in a pool slot

        def done() -> None:
            ack(log, consumer.connection_errors)
            consumer.qos.decrement_eventually()

        delay = _seconds_until(headers.get("eta"))
        if delay > 0:
            consumer.timer.call_after(delay, sender.submit, (args[0], retries, done))
        else:
            sender.submit(args[0], retries, done)

    return handle


def _seconds_until(eta: Any) -> float:
    if not isinstance(eta, str):
        return 0.0
    try:
        when = datetime.fromisoformat(eta)
    except ValueError:
        return 0.0
    return max(0.0, when.timestamp() - time.time())
