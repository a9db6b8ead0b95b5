"""Completion webhooks: signatures, and delivery retries against a local HTTP server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from worker.webhook import deliver, sign, verify

SECRET = "top-secret"
BODY = b'{"job_id": "x", "status": "succeeded"}'


def test_signature_verifies_and_binds_body_timestamp_and_secret() -> None:
    """A signature verifies for its own body, timestamp and secret only."""
    signature = sign(SECRET, 1000, BODY)
    assert signature.startswith("v1=")
    assert verify(SECRET, 1000, BODY, signature, now=1000)
    assert not verify(SECRET, 1000, BODY + b" ", signature, now=1000)
    assert not verify(SECRET, 1001, BODY, signature, now=1000)
    assert not verify("other", 1000, BODY, signature, now=1000)


def test_old_timestamps_are_rejected() -> None:
    """A correctly signed delivery older than the tolerance is refused (replay protection)."""
    signature = sign(SECRET, 1000, BODY)
    assert verify(SECRET, 1000, BODY, signature, now=1299)
    assert not verify(SECRET, 1000, BODY, signature, now=1301)


class Receiver:
    """A local HTTP server answering POSTs with scripted statuses."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.calls: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.calls.append({"headers": dict(self.headers.items()), "body": body})
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver_factory() -> Iterator[Any]:
    servers: list[Receiver] = []

    def make(statuses: list[int]) -> Receiver:
        servers.append(Receiver(statuses))
        return servers[-1]

    yield make
    for receiver in servers:
        receiver.server.shutdown()
        receiver.server.server_close()


def test_5xx_answers_are_retried_until_delivered(receiver_factory: Any) -> None:
    """500/503 answers are retried until a 2xx; every attempt is signed and carries the job id."""
    receiver = receiver_factory([500, 503, 200])
    assert deliver(receiver.url, BODY, job_id="job-1", secret=SECRET, backoff=0.01)
    assert len(receiver.calls) == 3
    for call in receiver.calls:
        headers = call["headers"]
        assert call["body"] == BODY and headers["Comfyfarm-Webhook-Id"] == "job-1"
        timestamp = int(headers["Comfyfarm-Webhook-Timestamp"])
        assert verify(SECRET, timestamp, BODY, headers["Comfyfarm-Webhook-Signature"])


def test_a_4xx_answer_is_not_retried(receiver_factory: Any) -> None:
    """A receiver that refuses (404) is not asked again."""
    receiver = receiver_factory([404, 200])
    assert not deliver(receiver.url, BODY, job_id="job-1", secret=SECRET, backoff=0.01)
    assert len(receiver.calls) == 1


def test_delivery_gives_up_after_its_attempts(receiver_factory: Any) -> None:
    """A receiver that keeps failing gets ``attempts`` tries, then deliver returns False."""
    receiver = receiver_factory([502] * 10)
    assert not deliver(receiver.url, BODY, job_id="j", secret=None, attempts=3, backoff=0.01)
    assert len(receiver.calls) == 3
    assert "Comfyfarm-Webhook-Signature" not in receiver.calls[0]["headers"]


def test_unreachable_receiver_is_retried_then_reported() -> None:
    """Connection errors count as failed attempts, not exceptions."""
    from comfyfarm.services import free_port

    url = f"http://127.0.0.1:{free_port()}/hook"
    assert not deliver(url, BODY, job_id="j", secret=SECRET, attempts=2, backoff=0.01)
