"""Cooperative cancellation for a job that is waiting on ComfyUI's WebSocket.

``CancellableStream`` wraps an event stream: while the tracker waits for the next event, the wait
is cut into short slices and the cancel check runs between them (at most once per
``CHECK_INTERVAL``), so a cancel request is noticed within about ``CHECK_INTERVAL`` seconds even
when ComfyUI is silent (a long node, a queued prompt).

The check itself (``worker.cancel_watch.JobCancelCheck``) asks Redis once and then looks at the
cancels pushed to the worker process, so a slice costs no Redis command while subscribed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

CHECK_INTERVAL = 0.5


class JobCancelled(Exception):
    """Raised inside the runner when a cancel was requested for the job being followed."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"job {job_id} was cancelled")


class Stream(Protocol):
    def connect(self, timeout: float = 10.0) -> None: ...
    def receive(self, timeout: float) -> Any: ...
    def close(self) -> None: ...


class CancellableStream:
    """An event stream whose ``receive`` raises :class:`JobCancelled` once a cancel is requested."""

    def __init__(self, stream: Stream, cancel_requested: Callable[[], bool], *, job_id: str = ""):
        self._stream = stream
        self._cancel_requested = cancel_requested
        self._job_id = job_id
        self._next_check = 0.0  # monotonic time of the next cancel check

    def connect(self, timeout: float = 10.0) -> None:
        self._stream.connect(timeout)

    def receive(self, timeout: float) -> Any:
        end = time.monotonic() + timeout
        while True:
            # At most one check per interval: events can arrive hundreds of times a second and
            # each check is a Redis round trip.
            now = time.monotonic()
            if now >= self._next_check:
                self._next_check = now + CHECK_INTERVAL
                if self._cancel_requested():
                    raise JobCancelled(self._job_id)
            remaining = end - time.monotonic()
            if remaining <= 0:
                return None
            event = self._stream.receive(min(CHECK_INTERVAL, remaining))
            if event is not None:
                return event

    def close(self) -> None:
        self._stream.close()

    def __getattr__(self, name: str) -> Any:
        # Anything else (reconnect, client id, ...) is the wrapped stream's.
        return getattr(self._stream, name)
