"""Sending a job's progress off the job's own path: newest value wins, at a bounded rate.

Progress is informative, the job is not: a job thread that wrote every node change to Redis
(a result-backend write plus a Flower event, each a few Redis round trips) spent a third of a
short job's CPU on it and saw ComfyUI's next event late. ``ProgressSender.offer`` only stores
the newest value and wakes a helper thread, which sends it

- at most once per ``min_interval`` (``COMFYFARM_PROGRESS_INTERVAL``, 5 s; the clock starts with
  the sender) — and always eventually, so a long node that sends no events is still shown,
- sooner for a phase change (uploading → submitted → running → collecting): once the new phase
  has held for ``settle`` (1 s, at most ``min_interval``), or with a periodic update that falls
  due before that. A phase that ends sooner costs no update of its own: "submitted" right
  before "running" is never shown, nor "collecting" right before the job's final state
  (``close`` drops it; the final state says more). A phase that lasts is shown at most
  ``settle`` late.

Every update costs Redis two or three commands (a backend write, its message, and for a phase
change the Flower event, ``worker.task_progress``). With every phase sent at once, a 10 s job
(8 on 2 simulated GPUs) sent ~4.75 updates, ~14 commands, a fifth of all it cost Redis; now
~2.75 updates, ~7 commands.

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
DEFAULT_SETTLE = 1.0


class SendSchedule:
    """When the newest offered value is due, by the rules above, from the times of offers and
    sends: the sender's decisions without its thread (and so testable without one)."""

    def __init__(self, *, min_interval: float, settle: float, start: float) -> None:
        self._min_interval = min_interval
        self._settle = min(settle, min_interval)
        self._last_sent = start  # the periodic clock starts with the job
        self._sent_phase: str | None = None
        self._phase: str | None = None  # the phase of the newest offered value …
        self._phase_since = start  # … offered first at this time

    def offered(self, phase: str, now: float) -> None:
        if phase != self._phase:
            self._phase, self._phase_since = phase, now

    def sent(self, phase: str, now: float) -> None:
        self._sent_phase, self._last_sent = phase, now

    def due(self) -> float:
        """When the newest offered value is due (a monotonic time; may be past)."""
        periodic = self._last_sent + self._min_interval
        if self._phase == self._sent_phase:
            return periodic
        settled = self._phase_since + self._settle
        # A periodic update that fell due before this phase began (nothing to send then, e.g.
        # while the prompt waited in ComfyUI's queue) does not hurry it.
        return settled if periodic <= self._phase_since else min(periodic, settled)


class ProgressSender:
    """Sends offered JobProgress values through ``send`` from one helper thread."""

    def __init__(
        self,
        send: Callable[[JobProgress], None],
        *,
        min_interval: float = DEFAULT_MIN_INTERVAL,
        settle: float = DEFAULT_SETTLE,
    ) -> None:
        self._send = send
        self._schedule = SendSchedule(
            min_interval=min_interval, settle=settle, start=time.monotonic()
        )
        self._cond = threading.Condition()
        self._pending: JobProgress | None = None
        self._closed = False
        self._thread: threading.Thread | None = None

    def offer(self, progress: JobProgress) -> None:
        """Queue ``progress`` to be sent (replacing an unsent older value); never blocks on I/O."""
        with self._cond:
            if self._closed:
                return
            self._schedule.offered(progress.phase, time.monotonic())
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
            if progress is None:
                self._cond.wait()
                continue
            wait = self._schedule.due() - time.monotonic()
            if wait <= 0:
                self._pending = None
                self._schedule.sent(progress.phase, time.monotonic())
                return progress
            self._cond.wait(wait)
        return None
