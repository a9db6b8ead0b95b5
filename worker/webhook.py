"""Signed completion webhooks.

The body is the job's result JSON. Headers (in the style of Standard Webhooks):
``Comfyfarm-Webhook-Id`` (the job id, stable across retries so receivers can de-duplicate),
``Comfyfarm-Webhook-Timestamp`` (unix seconds) and ``Comfyfarm-Webhook-Signature``:
``v1=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>``. Receivers recompute it and reject a
timestamp older than a few minutes. The secret comes from ``COMFYFARM_WEBHOOK_SECRET`` and is never
logged.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import logging
import time

import requests

log = logging.getLogger(__name__)

TIMEOUT = 5.0  # per attempt: a hanging receiver holds a worker's pool process this long


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify(
    secret: str,
    timestamp: int,
    body: bytes,
    signature: str,
    *,
    tolerance: int = 300,
    now: float | None = None,
) -> bool:
    """True when ``signature`` matches and the timestamp is within ``tolerance`` seconds."""
    if abs((now if now is not None else time.time()) - timestamp) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


class Attempt(enum.Enum):
    """How one POST of a webhook ended."""

    DELIVERED = "delivered"  # 2xx
    REFUSED = "refused"  # 4xx other than 429: the receiver will not take it; do not retry
    FAILED = "failed"  # 5xx, 429, connection error or timeout: try again later


def post_once(url: str, body: bytes, *, job_id: str, secret: str | None) -> Attempt:
    """POST ``body`` to ``url`` once, signed with a fresh timestamp."""
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "Comfyfarm-Webhook-Id": job_id,
        "Comfyfarm-Webhook-Timestamp": str(timestamp),
    }
    if secret:
        headers["Comfyfarm-Webhook-Signature"] = sign(secret, timestamp, body)
    try:
        response = requests.post(url, data=body, headers=headers, timeout=TIMEOUT)
    except requests.RequestException as exc:
        log.info("webhook for job %s failed (%s)", job_id, type(exc).__name__)
        return Attempt.FAILED
    if response.ok:
        return Attempt.DELIVERED
    if response.status_code < 500 and response.status_code != 429:
        log.warning("webhook for job %s refused with HTTP %s", job_id, response.status_code)
        return Attempt.REFUSED
    log.info("webhook for job %s failed (HTTP %s)", job_id, response.status_code)
    return Attempt.FAILED
