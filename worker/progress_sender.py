"""Sending a job's progress off the job's own path: newest value wins, at a bounded rate.

Progress is informative, the job is not: a job thread that wrote every node change to Redis
(a result-backend write plus a Flower event, each a few Redis round trips) spent a third of a
short job's CPU on it and saw ComfyUI's next event late. ``ProgressSender.offer`` only stores
the newest value and wakes a helper thread, which sends it

- at once when the phase changes (queued → running → collecting), unless the previous phase
  change was sent less than ``min_phase_interval`` ago: then when that has passed. Phases that
  follow each other faster than anyone can watch (a job of a few milliseconds) cost Redis one
  progress write instead of one per phase (each is a backend write plus a Flower event); a job
  whose phases last longer still shows every one of them,
- otherwise at most once per ``min_interval`` (``COMFYFARM_PROGRESS_INTERVAL``, 5 s) — and
  always eventually, so a long node that sends no events is still shown. Every update costs
  Redis three commands (a backend write, its message, the Flower event): at two a second they
  were most of what a job cost Redis; a phase still shows at once.

Values offered while one is being sent replace each other; only the newest is sent next.
``close`` drops what was not sent yet and waits for a send in progress, so nothing written
after it (the task's final state) can be overwritten by a late progress update.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from comfyfarm.tasks.models import JobProgress

log = logging.getLogger(__name__)

DEFAULT_MIN_INTERVAL = 5.0
DEFAULT_MIN_PHASE_INTERVAL = 0.25


class ProgressSender:
    """Sends offered JobProgress values through ``send`` from one helper thread."""

    def __init__(
        self,
        send: Callable[[JobProgress], None],
        *,
        min_interval: float = DEFAULT_MIN_INTERVAL,
        min_phase_interval: float = DEFAULT_MIN_PHASE_INTERVAL,
    ) -> None:
        self._send = send
        self._min_interval = min_interval
        self._min_phase_interval = min(min_phase_interval, min_interval)
        self._cond = threading.Condition()
        self._pending: JobProgress | None = None
        self._last_phase: str | None = None
        self._last_sent = float("-inf")
        self._phase_sent = float("-inf")  # when the last phase change was sent
        self._closed = False
        self._thread: threading.Thread | None = None

    def offer(self, progress: JobProgress) -> None:
        """Queue ``progress`` to be sent (replacing an unsent older value); never blocks on I/O."""
        with self._cond:
            if self._closed:
                return
            self._pending = progress
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="progress-sender", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    __call__ = offer

    def close(self) -> None:
        """Drop any unsent value, wait for a send in progress to end, stop the thread."""
        with self._cond:
            self._closed = True
            self._pending = None
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                progress = self._next_due()
                if progress is None:
                    return  # closed
            try:
                self._send(progress)
            except Exception as exc:  # informative only: a Redis blip must not stop the job
                log.warning("could not report progress of job %s: %s", progress.job_id, exc)

    def _next_due(self) -> JobProgress | None:
        """Wait (holding the condition) until a value is due or we are closed; take it."""
        while not self._closed:
            progress = self._pending
            if progress is not None:
                new_phase = progress.phase != self._last_phase
                if new_phase:
                    wait = self._phase_sent + self._min_phase_interval - time.monotonic()
                else:
                    wait = self._last_sent + self._min_interval - time.monotonic()
                if wait <= 0:
                    self._pending = None
                    self._last_phase, self._last_sent = progress.phase, time.monotonic()
                    if new_phase:
                        self._phase_sent = self._last_sent
                    return progress
                self._cond.wait(wait)
            else:
                self._cond.wait()
        return None
