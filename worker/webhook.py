"""Signed completion webhooks.

The body is the job's result JSON. Headers (in the style of Standard Webhooks):
``Comfyfarm-Webhook-Id`` (the job id, stable across retries so receivers can de-duplicate),
``Comfyfarm-Webhook-Timestamp`` (unix seconds) and ``Comfyfarm-Webhook-Signature``:
``v1=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>``. Receivers recompute it and reject a
timestamp older than a few minutes. The secret comes from ``COMFYFARM_WEBHOOK_SECRET`` and is never
logged.

An attempt has a *total* deadline (``TIMEOUT``): a per-read timeout is not enough, a receiver
trickling one byte every two seconds never trips it. A timer shuts the socket down when the
deadline passes, which ends whatever read or write is blocked on it.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import http.client
import logging
import socket
import threading
import time
from urllib.parse import unquote, urlsplit

log = logging.getLogger(__name__)

TIMEOUT = 5.0  # seconds per attempt, in total (connect, send, the answer's status and headers)


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


def post_once(
    url: str, body: bytes, *, job_id: str, secret: str | None, timeout: float = TIMEOUT
) -> Attempt:
    """POST ``body`` to ``url`` once, signed with a fresh timestamp, within ``timeout`` seconds
    in total (``FAILED`` after it)."""
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "Comfyfarm-Webhook-Id": job_id,
        "Comfyfarm-Webhook-Timestamp": str(timestamp),
    }
    if secret:
        headers["Comfyfarm-Webhook-Signature"] = sign(secret, timestamp, body)
    try:
        status = _post(url, body, headers, timeout)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        log.info("webhook for job %s failed (%s)", job_id, type(exc).__name__)
        return Attempt.FAILED
    if 200 <= status < 300:
        return Attempt.DELIVERED
    if status < 500 and status != 429:
        log.warning("webhook for job %s refused with HTTP %s", job_id, status)
        return Attempt.REFUSED
    log.info("webhook for job %s failed (HTTP %s)", job_id, status)
    return Attempt.FAILED


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    """The status of one POST; the socket is shut down ``timeout`` seconds after the start."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http(s) URL")
    connection_type = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    connection = connection_type(parts.hostname, parts.port, timeout=timeout)
    if parts.username is not None:
        user = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers = {**headers, "Authorization": "Basic " + base64.b64encode(user.encode()).decode()}
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    timer = threading.Timer(timeout, _abort, (connection,))
    timer.daemon = True
    timer.start()
    try:
        connection.request("POST", target, body=body, headers=headers)
        return connection.getresponse().status
    finally:
        timer.cancel()
        connection.close()


def _abort(connection: http.client.HTTPConnection) -> None:
    sock = connection.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed
