"""Completion webhooks: signatures, single attempts against a local HTTP server, backoff."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from comfyfarm.worker.webhook import Attempt, post_once, sign, verify
from comfyfarm.worker.webhook_task import MAX_BACKOFF, backoff

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


def test_an_attempt_is_signed_and_carries_the_job_id(receiver_factory: Any) -> None:
    """One POST of the body, with the job id, a timestamp and a signature that verifies."""
    receiver = receiver_factory([200])
    assert post_once(receiver.url, BODY, job_id="job-1", secret=SECRET) is Attempt.DELIVERED
    [call] = receiver.calls
    headers = call["headers"]
    assert call["body"] == BODY and headers["Comfyfarm-Webhook-Id"] == "job-1"
    timestamp = int(headers["Comfyfarm-Webhook-Timestamp"])
    assert verify(SECRET, timestamp, BODY, headers["Comfyfarm-Webhook-Signature"])


def test_without_a_secret_no_signature_is_sent(receiver_factory: Any) -> None:
    """A farm without COMFYFARM_WEBHOOK_SECRET sends unsigned calls."""
    receiver = receiver_factory([200])
    assert post_once(receiver.url, BODY, job_id="j", secret=None) is Attempt.DELIVERED
    assert "Comfyfarm-Webhook-Signature" not in receiver.calls[0]["headers"]


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_server_errors_and_throttling_are_failures_to_retry(
    receiver_factory: Any, status: int
) -> None:
    """5xx and 429 answers mean "try again later"."""
    receiver = receiver_factory([status])
    assert post_once(receiver.url, BODY, job_id="j", secret=SECRET) is Attempt.FAILED


@pytest.mark.parametrize("status", [400, 404, 410])
def test_a_4xx_answer_is_a_refusal(receiver_factory: Any, status: int) -> None:
    """A receiver that refuses is not asked again."""
    receiver = receiver_factory([status])
    assert post_once(receiver.url, BODY, job_id="j", secret=SECRET) is Attempt.REFUSED


def test_an_unreachable_receiver_is_a_failure_not_an_exception() -> None:
    """Connection errors come back as FAILED."""
    from comfyfarm.services import free_port

    url = f"http://127.0.0.1:{free_port()}/hook"
    assert post_once(url, BODY, job_id="j", secret=SECRET) is Attempt.FAILED


def test_retries_back_off_exponentially_up_to_a_cap() -> None:
    """Attempts are spaced 2, 4, 8 ... seconds apart, never more than MAX_BACKOFF."""
    assert [backoff(n) for n in range(7)] == [2, 4, 8, 16, 32, 64, 64]
    assert MAX_BACKOFF == 64
