"""Cooperative cancellation through Redis.

A producer sets ``<prefix>cancel:<job_id>`` and publishes the job id on ``<prefix>cancels``.
A worker asks for the flag once before it starts a job (that covers a cancel sent before), then
learns of a cancel from the channel (``worker.cancel_watch``: one subscription per worker
process, no polling), interrupts ComfyUI (only that prompt) and records the job as cancelled.
The key outlives the job (TTL) so a queued copy that a worker picks up later, or a redelivered
one, is dropped too.
"""

from __future__ import annotations

import json
import time

import redis

from comfyfarm.tasks.keyspace import cancel_channel, cancel_key

CANCEL_TTL_SECONDS = 7 * 24 * 3600


def request_cancel(
    client: redis.Redis,
    prefix: str,
    job_id: str,
    *,
    reason: str = "cancelled by request",
    ttl: float = CANCEL_TTL_SECONDS,
) -> bool:
    """Flag ``job_id`` as cancelled and tell the workers; True if this call set the flag
    (False: already set). The flag comes first, so a worker that misses the message finds it
    when it asks; the message goes out even if the flag was set before (a repeated cancel is
    a repeated push, never a lost one)."""
    payload = json.dumps({"at": time.time(), "reason": reason})
    with client.pipeline(transaction=False) as pipe:
        pipe.set(cancel_key(prefix, job_id), payload, nx=True, px=int(ttl * 1000))
        pipe.publish(cancel_channel(prefix), job_id)
        flag_set, _ = pipe.execute()
    return bool(flag_set)


def cancel_requested(client: redis.Redis, prefix: str, job_id: str) -> bool:
    """Whether someone asked to cancel ``job_id`` (one EXISTS)."""
    return bool(client.exists(cancel_key(prefix, job_id)))


def cancel_reason(client: redis.Redis, prefix: str, job_id: str) -> str | None:
    """The reason given with the cancel request, or None if there is none."""
    raw = client.get(cancel_key(prefix, job_id))
    if raw is None:
        return None
    try:
        return str(json.loads(raw).get("reason", ""))
    except (ValueError, AttributeError):
        return ""


def clear_cancel(client: redis.Redis, prefix: str, job_id: str) -> None:
    """Remove the flag (e.g. before deliberately re-submitting the same job id)."""
    client.delete(cancel_key(prefix, job_id))
