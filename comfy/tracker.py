"""Completion of one prompt: ``PromptTracker`` (pure state machine) and ``follow_prompt`` (I/O).

The tracker is fed events and filters on *our* prompt id. ``executing`` with ``node: null`` is the
end for every outcome (it comes after ``execution_success``/``_error``/``_interrupted`` and after
history is written), so that is what finishes it; the error events only decide *how* it ended.

``follow_prompt`` reads the stream, and instead of trusting it blindly it reconciles with ComfyUI
(``ComfyClient.lookup``: history, queue, or the job API) when the socket drops (ComfyUI does not
replay missed events) and when our prompt has been silent for ``stall_timeout`` seconds.

Silence alone is not a fault: a model load, a video VAE decode or any node on a slow box sends
nothing for minutes while ComfyUI still lists the prompt as running. Such a prompt is followed
until its deadline. Only a ComfyUI that stops answering (``ComfyUnavailable``) or no longer knows
the prompt (``PromptLost``) ends the wait early; a deadline that falls during a silent run is
reported as ``PromptTimeout(kind="stall")`` so the operator sees why.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from comfyfarm.comfy import events as ev
from comfyfarm.comfy.errors import (
    ComfyServerError,
    ComfyUnavailable,
    ExecutionFailed,
    ExecutionInterrupted,
    PromptLost,
    PromptTimeout,
)
from comfyfarm.comfy.history import HistoryEntry
from comfyfarm.comfy.state import PromptLookup, PromptState
from comfyfarm.tasks.redact import redact_url

log = logging.getLogger(__name__)


class PromptTracker:
    """State of one prompt, built only from the events it is fed (no I/O, no clock).

    ``feed(event, at)`` takes the time the event arrived (any monotonic seconds); node durations
    run from a node's ``executing`` to the next node's, or to the end of the prompt. Cached nodes
    never get an ``executing`` and so have no duration.
    """

    def __init__(self, prompt_id: str) -> None:
        self.prompt_id = prompt_id
        self.started = False
        self.done = False
        self.succeeded = False
        self.failure: ExecutionFailed | ExecutionInterrupted | None = None
        self.cached_nodes: list[str] = []
        self.node_durations: dict[str, float] = {}
        self.outputs: dict[str, dict[str, Any]] = {}
        self.current_node: str | None = None
        self.last_event_at: float | None = None
        self._node_started_at = 0.0

    def feed(self, event: ev.Event, at: float) -> bool:
        """Apply one event; True if it belongs to our prompt (it then counts as activity).

        Previews and progress text without a prompt id are attributed to us while our prompt
        runs: ComfyUI only sends them to the socket of the running prompt's client.
        """
        if self.done:
            return False
        prompt_id = ev.event_prompt_id(event)
        if prompt_id is None:
            ours = self.started and isinstance(event, ev.PreviewImage | ev.ProgressText)
            if ours:
                self.last_event_at = at
            return ours
        if prompt_id != self.prompt_id:
            return False
        self.last_event_at = at
        self._apply(event, at)
        return True

    def _apply(self, event: ev.Event, at: float) -> None:
        if isinstance(event, ev.Executing):
            if event.node is None:
                self._close_node(at)
                self.done = True
            elif event.node != self.current_node:
                self._close_node(at)
                self.current_node = event.node
                self._node_started_at = at
            self.started = True
        elif isinstance(event, ev.ExecutionCached):
            self.cached_nodes.extend(n for n in event.nodes if n not in self.cached_nodes)
            self.started = True
        elif isinstance(event, ev.Executed):
            self.outputs[event.node] = event.output
        elif isinstance(event, ev.ExecutionSuccess):
            self._close_node(at)
            self.succeeded = True
        elif isinstance(event, ev.ExecutionError):
            self._close_node(at)
            self.failure = ExecutionFailed(
                prompt_id=self.prompt_id,
                node_id=event.node_id,
                node_type=event.node_type,
                exception_type=event.exception_type,
                exception_message=event.exception_message,
                traceback=list(event.traceback),
            )
        elif isinstance(event, ev.ExecutionInterrupted):
            self._close_node(at)
            self.failure = ExecutionInterrupted(
                prompt_id=self.prompt_id, node_id=event.node_id, node_type=event.node_type
            )
        else:  # execution_start, progress, progress_state, previews with metadata
            self.started = True

    def _close_node(self, at: float) -> None:
        if self.current_node is not None:
            spent = max(0.0, at - self._node_started_at)
            self.node_durations[self.current_node] = (
                self.node_durations.get(self.current_node, 0.0) + spent
            )
            self.current_node = None


@dataclass(frozen=True)
class PromptOutcome:
    """A prompt that finished successfully: its history entry plus what the events told us."""

    history: HistoryEntry
    node_durations: dict[str, float] = field(default_factory=dict)
    cached_nodes: list[str] = field(default_factory=list)

    @classmethod
    def from_history(cls, history: HistoryEntry) -> PromptOutcome:
        """The outcome of a prompt found already finished (a redelivered job); raises its failure.

        No events were seen, so there are no node durations.
        """
        failure = history.failure()
        if failure is not None:
            raise failure
        return cls(history=history, cached_nodes=history.cached_nodes)


class PromptSource(Protocol):
    """What ``follow_prompt`` needs from the HTTP side (``ComfyClient`` has it)."""

    @property
    def base_url(self) -> str: ...

    def lookup(self, prompt_id: str) -> PromptLookup: ...

    def get_history(self, prompt_id: str) -> HistoryEntry | None: ...


class EventSource(Protocol):
    """What ``follow_prompt`` needs from the WebSocket side (``EventStream`` has it)."""

    def connect(self, timeout: float = 10.0) -> None: ...

    def receive(self, timeout: float) -> ev.Event | None: ...

    def close(self) -> None: ...


def follow_prompt(
    client: PromptSource,
    stream: EventSource,
    prompt_id: str,
    *,
    deadline: float | None,
    stall_timeout: float,
    on_event: Callable[[ev.Event], None] | None = None,
    max_stall: float | None = None,
    reconnect_attempts: int = 5,
    reconnect_delay: float = 0.5,
    connect_timeout: float = 10.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> PromptOutcome:
    """Wait until ComfyUI finishes ``prompt_id`` and return its outcome, or raise why not.

    ``stream`` must already be connected (before the prompt was submitted). ``deadline`` is a
    ``clock()`` (monotonic) time. When our prompt sends nothing for ``stall_timeout`` seconds we
    ask ComfyUI (again every ``stall_timeout`` while the silence lasts): finished → the outcome
    from history; pending or running → keep waiting (only the deadline limits it, unless
    ``max_stall`` caps the total silence of a running prompt: then ``PromptTimeout(kind="stall")``);
    unknown → ``PromptLost``. A dropped socket is reconnected
    (``reconnect_attempts``, exponential backoff from ``reconnect_delay``) and reconciled the same
    way; if ComfyUI stays away longer (or past the deadline), ``ComfyUnavailable``: an outage is
    not the job's fault. ``on_event`` sees every event of our prompt as it arrives.

    Raises ``ExecutionFailed``, ``ExecutionInterrupted``, ``PromptTimeout``, ``PromptLost`` or
    ``ComfyUnavailable``.
    """
    if stall_timeout <= 0:
        raise ValueError("stall_timeout must be positive")
    follower = _Follower(
        client,
        stream,
        PromptTracker(prompt_id),
        deadline=deadline,
        stall_timeout=stall_timeout,
        max_stall=max_stall,
        reconnect_attempts=reconnect_attempts,
        reconnect_delay=reconnect_delay,
        connect_timeout=connect_timeout,
        clock=clock,
        sleep=sleep,
    )
    return follower.run(on_event)


_HISTORY_TRIES = 5
_HISTORY_RETRY_DELAY = 0.2
_MAX_RECONNECT_DELAY = 5.0


class _Follower:
    """The I/O loop of ``follow_prompt``; all times come from ``clock``."""

    def __init__(
        self,
        client: PromptSource,
        stream: EventSource,
        tracker: PromptTracker,
        *,
        deadline: float | None,
        stall_timeout: float,
        max_stall: float | None,
        reconnect_attempts: int,
        reconnect_delay: float,
        connect_timeout: float,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
    ) -> None:
        self.client = client
        self.stream = stream
        self.tracker = tracker
        self.prompt_id = tracker.prompt_id
        self.deadline = deadline
        self.stall_timeout = stall_timeout
        self.max_stall = max_stall
        self.reconnect_attempts = reconnect_attempts
        self.reconnect_delay = reconnect_delay
        self.connect_timeout = connect_timeout
        self.clock = clock
        self.sleep = sleep
        self.started_at = clock()
        self.last_activity = self.started_at  # last event of ours, or last "pending" answer
        self.next_check = self.started_at + stall_timeout
        self.stalled_running = False  # the last reconcile found it running but silent

    def run(self, on_event: Callable[[ev.Event], None] | None) -> PromptOutcome:
        while True:
            now = self.clock()
            self._check_deadline(now)
            wait = self.next_check - now
            if self.deadline is not None:
                wait = min(wait, self.deadline - now)
            try:
                event = self.stream.receive(max(wait, 0.0))
            except ComfyUnavailable as exc:
                outcome = self._reconcile(self._reconnect(exc))
            else:
                outcome = self._handle(event, on_event)
            if outcome is not None:
                return outcome

    def _handle(
        self, event: ev.Event | None, on_event: Callable[[ev.Event], None] | None
    ) -> PromptOutcome | None:
        now = self.clock()
        if event is not None and self.tracker.feed(event, now):
            self.last_activity = now
            self.next_check = now + self.stall_timeout
            self.stalled_running = False
            if on_event is not None:
                on_event(event)
            return self._finish() if self.tracker.done else None
        # Silence, or only other prompts' events and broadcasts: those do not keep us alive.
        if now < self.next_check:
            return None
        try:
            lookup = self.client.lookup(self.prompt_id)
        except (ComfyUnavailable, ComfyServerError) as exc:
            self.stream.close()
            lookup = self._reconnect(exc)
        return self._reconcile(lookup)

    def _reconcile(self, lookup: PromptLookup) -> PromptOutcome | None:
        """Act on what ComfyUI says after a stall or a reconnect."""
        now = self.clock()
        log.debug("prompt %s reconciled: %s", self.prompt_id, lookup.state.value)
        if lookup.state is PromptState.DONE and lookup.history is not None:
            return self._outcome(lookup.history)
        if lookup.state is PromptState.UNKNOWN or lookup.state is PromptState.DONE:
            raise PromptLost(prompt_id=self.prompt_id)
        if lookup.state is PromptState.PENDING:
            # Waiting in the queue is not a stall: only the deadline limits it.
            self.last_activity = now
            self.stalled_running = False
            self.next_check = now + self.stall_timeout
            return None
        # Running: ComfyUI answers and still has it, so silence is a slow node, not a fault.
        silent = now - self.last_activity
        self.stalled_running = silent >= self.stall_timeout
        if self.max_stall is None:
            self.next_check = now + self.stall_timeout
            return None
        if silent >= self.max_stall:
            raise PromptTimeout(prompt_id=self.prompt_id, kind="stall", seconds=silent)
        self.next_check = now + min(self.stall_timeout, self.max_stall - silent)
        return None

    def _check_deadline(self, now: float) -> None:
        if self.deadline is None or now < self.deadline:
            return
        if self.stalled_running:
            silent = now - self.last_activity
            raise PromptTimeout(prompt_id=self.prompt_id, kind="stall", seconds=silent)
        elapsed = now - self.started_at
        raise PromptTimeout(prompt_id=self.prompt_id, kind="deadline", seconds=elapsed)

    def _reconnect(self, cause: ComfyUnavailable | ComfyServerError) -> PromptLookup:
        """Reconnect the socket (same client id) and ask where our prompt is."""
        began = self.clock()
        last: ComfyUnavailable | ComfyServerError = cause
        for attempt in range(self.reconnect_attempts):
            delay = 0.0 if attempt == 0 else self.reconnect_delay * 2 ** (attempt - 1)
            delay = min(delay, _MAX_RECONNECT_DELAY)
            if self.deadline is not None:
                delay = min(delay, max(0.0, self.deadline - self.clock()))
            if delay:
                self.sleep(delay)
            if self.deadline is not None and self.clock() >= self.deadline:
                break
            try:
                self.stream.connect(self.connect_timeout)
                # Connected first, then asked: nothing can slip between the answer and listening.
                return self.client.lookup(self.prompt_id)
            except (ComfyUnavailable, ComfyServerError) as exc:
                log.info("prompt %s: reconnect attempt %d failed: %s", self.prompt_id, attempt, exc)
                last = exc
                self.stream.close()
        reason = last.reason if isinstance(last, ComfyUnavailable) else str(last)
        raise ComfyUnavailable(
            url=redact_url(self.client.base_url),
            reason=f"connection lost and not back after {self.clock() - began:.1f} s: {reason}",
        ) from last

    def _finish(self) -> PromptOutcome | None:
        """Our prompt sent ``executing`` null: raise its failure or read its history."""
        if self.tracker.failure is not None:
            raise self.tracker.failure
        history = None
        for attempt in range(_HISTORY_TRIES):
            try:
                history = self.client.get_history(self.prompt_id)
            except (ComfyUnavailable, ComfyServerError) as exc:
                # Finished, then ComfyUI went away: reconnect and take whatever lookup says.
                self.stream.close()
                return self._reconcile(self._reconnect(exc))
            if history is not None:
                break
            if attempt + 1 < _HISTORY_TRIES:
                self.sleep(_HISTORY_RETRY_DELAY)
        if history is None:
            if not self.tracker.succeeded:
                raise PromptLost(prompt_id=self.prompt_id)
            # History was cleared (or capped) under us: the events carried the outputs.
            history = HistoryEntry(
                prompt_id=self.prompt_id,
                status_str="success",
                completed=True,
                outputs=dict(self.tracker.outputs),
                messages=[["execution_cached", {"nodes": list(self.tracker.cached_nodes)}]],
                raw={"source": "websocket"},
            )
        return self._outcome(history)

    def _outcome(self, history: HistoryEntry) -> PromptOutcome:
        outcome = PromptOutcome.from_history(history)
        return PromptOutcome(
            history=history,
            node_durations=dict(self.tracker.node_durations),
            cached_nodes=list(self.tracker.cached_nodes or outcome.cached_nodes),
        )
