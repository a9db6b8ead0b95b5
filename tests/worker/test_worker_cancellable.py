"""CancellableStream: a cancel request is noticed while waiting on a silent WebSocket."""

from __future__ import annotations

import time
from typing import Any

import pytest

from comfyfarm.worker import cancellable
from comfyfarm.worker.cancellable import CancellableStream, JobCancelled


class FakeStream:
    """Answers ``receive`` from a script; None means "nothing within the timeout"."""

    def __init__(self, script: list[Any]) -> None:
        self.script = list(script)
        self.timeouts: list[float] = []
        self.connected: float | None = None
        self.closed = False
        self.client_id = "abc"

    def connect(self, timeout: float = 10.0) -> None:
        self.connected = timeout

    def receive(self, timeout: float) -> Any:
        self.timeouts.append(timeout)
        event = self.script.pop(0) if self.script else None
        if event is None:
            time.sleep(timeout)  # a silent ComfyUI: the wait runs out
        return event

    def close(self) -> None:
        self.closed = True


def test_events_pass_through_until_a_cancel_is_requested(monkeypatch: pytest.MonkeyPatch) -> None:
    """Events are returned as they come; once cancel is requested ``receive`` raises."""
    monkeypatch.setattr(cancellable, "CHECK_INTERVAL", 0.0)  # check before every receive
    flag = {"cancel": False}
    stream = CancellableStream(FakeStream(["a", "b"]), lambda: flag["cancel"], job_id="j1")
    assert stream.receive(5) == "a"
    flag["cancel"] = True
    with pytest.raises(JobCancelled) as caught:
        stream.receive(5)
    assert caught.value.job_id == "j1"


def test_long_waits_are_cut_into_slices_with_a_cancel_check_between(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A silent stream is polled in short slices with a cancel check between them."""
    monkeypatch.setattr(cancellable, "CHECK_INTERVAL", 0.01)
    checks = []

    def requested() -> bool:
        checks.append(time.monotonic())
        return len(checks) > 3

    inner = FakeStream([None] * 100)
    stream = CancellableStream(inner, requested)
    with pytest.raises(JobCancelled):
        stream.receive(60)
    assert len(inner.timeouts) == 3 and all(t <= 0.01 for t in inner.timeouts)


def test_silence_for_the_whole_timeout_returns_none(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without events or a cancel, ``receive`` returns None after about ``timeout`` seconds."""
    monkeypatch.setattr(cancellable, "CHECK_INTERVAL", 0.01)
    stream = CancellableStream(FakeStream([]), lambda: False)
    started = time.monotonic()
    assert stream.receive(0.05) is None
    assert 0.04 <= time.monotonic() - started < 1.0


def test_connect_close_and_other_attributes_reach_the_wrapped_stream() -> None:
    """connect/close are forwarded, and anything else is the wrapped stream's."""
    inner = FakeStream([])
    stream = CancellableStream(inner, lambda: False)
    stream.connect(3.0)
    stream.close()
    assert inner.connected == 3.0 and inner.closed and stream.client_id == "abc"


def test_cancel_is_checked_at_most_once_per_interval() -> None:
    """A burst of events costs one cancel check per interval, not one per event."""
    checks: list[float] = []
    stream = CancellableStream(FakeStream(list(range(50))), lambda: bool(checks.append(1)))
    assert [stream.receive(5) for _ in range(50)] == list(range(50))
    assert len(checks) == 1
