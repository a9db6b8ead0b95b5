"""Signed completion webhooks.

The body is the job's result JSON. Headers (in the style of Standard Webhooks):
``Comfyfarm-Webhook-Id`` (the job id, stable across retries so receivers can de-duplicate),
``Comfyfarm-Webhook-Timestamp`` (unix seconds) and ``Comfyfarm-Webhook-Signature``:
``v1=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>``. Receivers recompute it and reject a
timestamp older than a few minutes. The secret comes from ``COMFYFARM_WEBHOOK_SECRET`` and is never
logged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time

import requests

log = logging.getLogger(__name__)

ATTEMPTS = 4
TIMEOUT = 10.0


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


def deliver(
    url: str,
    body: bytes,
    *,
    job_id: str,
    secret: str | None,
    attempts: int = ATTEMPTS,
    backoff: float = 1.0,
) -> bool:
    """POST ``body`` to ``url``, retrying 5xx and connection errors with backoff. True on 2xx."""
    for attempt in range(1, attempts + 1):
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
            if response.ok:
                return True
            if response.status_code < 500 and response.status_code != 429:
                log.warning("webhook for job %s refused with HTTP %s", job_id, response.status_code)
                return False
            reason = f"HTTP {response.status_code}"
        except requests.RequestException as exc:
            reason = type(exc).__name__
        log.info("webhook for job %s failed (%s), attempt %d/%d", job_id, reason, attempt, attempts)
        if attempt < attempts:
            time.sleep(backoff * 2 ** (attempt - 1))  # backoff between deliveries, not a test sync
    return False
