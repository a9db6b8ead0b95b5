"""Which queued messages belong to cancelled jobs.

A cancel sets ``<prefix>cancel:<job_id>``; the job's message stays in its queue list until a
worker takes it and drops it (Celery's Redis transport cannot remove one message from the middle
of a list cheaply and safely). ``comfyfarm status`` would otherwise count those as work waiting,
so it subtracts them: "N queued (M cancelled, dropped when a worker takes them)".

Cost: one SCAN over the cancel keys; only when there are any, the queue lists are read (at most
``MAX_SCANNED`` messages per list, in pages) and each message's ``headers.id`` looked up in that
set. A message that is not JSON or has no id is simply not counted as cancelled.
"""

from __future__ import annotations

import json

import redis

from comfyfarm.tasks.keyspace import cancel_key

#: Messages read per queue list at most; beyond it the count is a lower bound.
MAX_SCANNED = 50_000
_PAGE = 1000


def cancelled_job_ids(client: redis.Redis, prefix: str) -> set[str]:
    """Ids of every job with a cancel flag (flags live for days, so this includes finished ones)."""
    start = cancel_key(prefix, "")
    pattern = _escape(start) + "*"
    return {_text(key)[len(start) :] for key in client.scan_iter(match=pattern, count=1000)}


def count_cancelled(client: redis.Redis, list_key: str, cancelled: set[str]) -> int:
    """Messages in ``list_key`` whose task id is in ``cancelled``."""
    if not cancelled:
        return 0
    found = 0
    for offset in range(0, MAX_SCANNED, _PAGE):
        page = client.lrange(list_key, offset, offset + _PAGE - 1)
        found += sum(1 for raw in page if _task_id(raw) in cancelled)
        if len(page) < _PAGE:
            break
    return found


def _task_id(raw: str | bytes) -> str | None:
    try:
        message = json.loads(raw)
        task_id = message["headers"]["id"]
    except (ValueError, KeyError, TypeError):
        return None
    return task_id if isinstance(task_id, str) else None


def _escape(text: str) -> str:
    return "".join(f"\\{ch}" if ch in "*?[]\\" else ch for ch in text)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
