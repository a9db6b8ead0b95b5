"""follow_prompt's I/O decisions on scripted fakes: reconnect, reconcile, stall, deadline.

A fake clock drives everything, so these run in microseconds and never sleep.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from comfy_traces import history_entry, load, socket_events

from comfyfarm.comfy import events as ev
from comfyfarm.comfy.errors import (
    ComfyUnavailable,
    ExecutionFailed,
    ExecutionInterrupted,
    PromptLost,
    PromptTimeout,
)
from comfyfarm.comfy.history import HistoryEntry
from comfyfarm.comfy.state import PromptLookup, PromptState
from comfyfarm.comfy.tracker import PromptOutcome, follow_prompt

PID = load("01")["prompt_id"]
SUCCESS_EVENTS = [e for _, e in socket_events(load("01"))]
HISTORY = HistoryEntry.from_dict(PID, history_entry(load("01"), PID)[PID])
SILENCE = "silence"
DROP = "drop"


@dataclass
class Clock:
    now: float = 100.0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class FakeStream:
    clock: Clock
    script: list = field(default_factory=list)
    connect_ok: list[bool] = field(default_factory=list)
    connects: int = 0

    def connect(self, timeout: float = 10.0) -> None:
        self.connects += 1
        if self.connect_ok and not self.connect_ok.pop(0):
            raise ComfyUnavailable(url="http://c", reason="refused")

    def receive(self, timeout: float):
        item = self.script.pop(0) if self.script else SILENCE
        if item == SILENCE:
            self.clock.now += timeout
            return None
        if item == DROP:
            raise ComfyUnavailable(url="http://c", reason="WebSocket dropped")
        self.clock.now += 0.01
        return item

    def close(self) -> None:
        pass


@dataclass
class FakeClient:
    lookups: list[PromptLookup] = field(default_factory=list)
    history: HistoryEntry | None = HISTORY
    lookup_calls: int = 0
    base_url: str = "http://c"

    def lookup(self, prompt_id: str) -> PromptLookup:
        self.lookup_calls += 1
        return self.lookups.pop(0) if len(self.lookups) > 1 else self.lookups[0]

    def get_history(self, prompt_id: str) -> HistoryEntry | None:
        return self.history


def follow(client, stream, clock, **kwargs):
    options = {"deadline": None, "stall_timeout": 5.0, "reconnect_delay": 0.5}
    options.update(kwargs)
    return follow_prompt(client, stream, PID, clock=clock, sleep=clock.sleep, **options)


RUNNING = PromptLookup(PromptState.RUNNING)
PENDING = PromptLookup(PromptState.PENDING)
UNKNOWN = PromptLookup(PromptState.UNKNOWN)
DONE = PromptLookup(PromptState.DONE, HISTORY)


def test_success_returns_history_durations_and_cached_nodes():
    """A clean run ends at executing null and returns the history entry."""
    clock = Clock()
    seen: list = []
    outcome = follow(
        FakeClient(), FakeStream(clock, list(SUCCESS_EVENTS)), clock, on_event=seen.append
    )
    assert outcome.history is HISTORY
    assert set(outcome.node_durations) == {"1", "2"} and outcome.cached_nodes == []
    assert not any(isinstance(e, ev.Status) for e in seen) and isinstance(seen[-1], ev.Executing)


def test_execution_error_raises_execution_failed():
    """execution_error then executing null raises ExecutionFailed without reading history."""
    first, _ = load("07")["prompt_ids"]
    events = [e for _, e in socket_events(load("07"))]
    clock = Clock()
    client = FakeClient(history=None)
    with pytest.raises(ExecutionFailed) as caught:
        follow_prompt(
            client, FakeStream(clock, events), first, deadline=None, stall_timeout=5, clock=clock
        )
    assert caught.value.node_type == "LoadImage"


def test_drop_then_reconnect_while_running_continues():
    """A dropped socket is reconnected, reconciled (running) and the run completes."""
    clock = Clock()
    script = SUCCESS_EVENTS[:6] + [DROP] + SUCCESS_EVENTS[6:]
    stream = FakeStream(clock, script)
    client = FakeClient(lookups=[RUNNING])
    assert follow(client, stream, clock).history is HISTORY
    assert stream.connects == 1 and client.lookup_calls == 1


def test_drop_then_reconnect_finds_it_finished_in_history():
    """Events missed while disconnected: history says done, so we finish from it."""
    clock = Clock()
    stream = FakeStream(clock, SUCCESS_EVENTS[:10] + [DROP])  # up to executing node 2
    outcome = follow(FakeClient(lookups=[DONE]), stream, clock)
    assert outcome.history is HISTORY
    assert "1" in outcome.node_durations  # what we saw before the drop is kept


def test_drop_then_reconnect_finds_an_error_in_history():
    """A failure that happened while disconnected is raised from history."""
    first, _ = load("07")["prompt_ids"]
    entry = HistoryEntry.from_dict(first, history_entry(load("07"), first)[first])
    clock = Clock()
    stream = FakeStream(clock, [DROP])
    client = FakeClient(lookups=[PromptLookup(PromptState.DONE, entry)])
    with pytest.raises(ExecutionFailed):
        follow_prompt(client, stream, first, deadline=None, stall_timeout=5, clock=clock)


def test_drop_then_restarted_server_means_prompt_lost():
    """After a reconnect ComfyUI does not know the prompt (it restarted): PromptLost."""
    clock = Clock()
    stream = FakeStream(clock, SUCCESS_EVENTS[:6] + [DROP], connect_ok=[False, False, True])
    with pytest.raises(PromptLost):
        follow(FakeClient(lookups=[UNKNOWN]), stream, clock)
    assert clock.sleeps == [0.5, 1.0]  # first attempt at once, then exponential backoff


def test_server_down_longer_than_the_reconnect_budget_is_unavailable():
    """Bounded reconnect attempts, then ComfyUnavailable (retryable)."""
    clock = Clock()
    stream = FakeStream(clock, [DROP], connect_ok=[False] * 10)
    with pytest.raises(ComfyUnavailable) as caught:
        follow(FakeClient(lookups=[RUNNING]), stream, clock, reconnect_attempts=4)
    assert stream.connects == 4 and clock.sleeps == [0.5, 1.0, 2.0]
    assert "not back after 3.5 s" in caught.value.reason


def test_stall_while_pending_keeps_waiting():
    """Silence while our prompt is still queued is not a stall; it then runs to the end."""
    clock = Clock()
    stream = FakeStream(clock, [SILENCE] * 6 + list(SUCCESS_EVENTS))
    client = FakeClient(lookups=[PENDING])
    assert follow(client, stream, clock).history is HISTORY
    assert client.lookup_calls == 6


def test_silence_while_running_is_followed_to_the_end():
    """Running but silent for many stall timeouts (a slow node) is no fault: it finishes."""
    clock = Clock()
    stream = FakeStream(clock, [SILENCE] * 9 + list(SUCCESS_EVENTS))
    client = FakeClient(lookups=[RUNNING])
    assert follow(client, stream, clock, stall_timeout=1.0).history is HISTORY
    assert client.lookup_calls == 9


def test_stall_while_running_times_out_after_max_stall():
    """With max_stall set: reconciled every stall_timeout, PromptTimeout(stall) at max_stall."""
    clock = Clock()
    stream = FakeStream(clock, SUCCESS_EVENTS[:6])
    client = FakeClient(lookups=[RUNNING])
    started = clock.now
    with pytest.raises(PromptTimeout) as caught:
        follow(client, stream, clock, stall_timeout=2.0, max_stall=5.0)
    assert caught.value.kind == "stall" and caught.value.seconds == pytest.approx(5.0, abs=0.1)
    assert clock.now - started == pytest.approx(5.06, abs=0.1)
    assert client.lookup_calls == 3  # at 2 s, 4 s and 5 s of silence


def test_stall_finds_the_prompt_finished():
    """A silent socket (zombie) but history has the entry: finish from history."""
    clock = Clock()
    stream = FakeStream(clock, SUCCESS_EVENTS[:6])
    assert follow(FakeClient(lookups=[DONE]), stream, clock).history is HISTORY


def test_stall_and_unknown_means_prompt_lost():
    """Silent and ComfyUI has never heard of it: PromptLost."""
    clock = Clock()
    with pytest.raises(PromptLost):
        follow(FakeClient(lookups=[UNKNOWN]), FakeStream(clock, []), clock)


def test_other_prompts_events_do_not_count_as_activity():
    """Broadcasts and other prompts' events do not reset the stall timer."""
    clock = Clock()
    noise = [ev.Status(queue_remaining=2), ev.ExecutionStart(prompt_id="other")] * 300
    client = FakeClient(lookups=[RUNNING])
    with pytest.raises(PromptTimeout):
        follow(client, FakeStream(clock, noise), clock, stall_timeout=1.0, max_stall=2.0)
    assert client.lookup_calls >= 2


def test_deadline_while_pending():
    """The deadline ends the wait with PromptTimeout(deadline)."""
    clock = Clock()
    with pytest.raises(PromptTimeout) as caught:
        follow(FakeClient(lookups=[PENDING]), FakeStream(clock, []), clock, deadline=clock.now + 12)
    assert caught.value.kind == "deadline" and caught.value.seconds == pytest.approx(12)


def test_deadline_during_a_silent_run_is_reported_as_a_stall():
    """If the deadline falls while our running prompt is silent, the cause is the stall."""
    clock = Clock()
    stream = FakeStream(clock, SUCCESS_EVENTS[:6])
    with pytest.raises(PromptTimeout) as caught:
        follow(
            FakeClient(lookups=[RUNNING]),
            stream,
            clock,
            stall_timeout=1.0,
            max_stall=100.0,
            deadline=clock.now + 3.5,
        )
    assert caught.value.kind == "stall"


def test_missing_history_after_success_uses_the_events():
    """History cleared under us: the outcome is built from the executed events."""
    clock = Clock()
    outcome = follow(FakeClient(history=None), FakeStream(clock, list(SUCCESS_EVENTS)), clock)
    assert outcome.history.raw == {"source": "websocket"}
    assert outcome.history.outputs["2"]["images"][0]["filename"] == "proto_success_00001_.png"
    assert clock.sleeps  # it retried history before falling back


def test_interrupt_raises_execution_interrupted():
    """Trace 09a: execution_interrupted then executing null raises ExecutionInterrupted."""
    prompt_id = load("09")["prompt_ids"]["09a"]
    events = [e for _, e in socket_events(load("09"))]
    clock = Clock()
    with pytest.raises(ExecutionInterrupted):
        follow_prompt(
            FakeClient(), FakeStream(clock, events), prompt_id, deadline=None, stall_timeout=5
        )


def test_history_unreachable_after_the_end_reconnects_and_reconciles():
    """ComfyUI gone right after executing null: reconnect, and lookup's history finishes it."""

    class FlakyHistory(FakeClient):
        def get_history(self, prompt_id: str) -> HistoryEntry | None:
            raise ComfyUnavailable(url="http://c", reason="refused")

    clock = Clock()
    stream = FakeStream(clock, list(SUCCESS_EVENTS))
    outcome = follow(FlakyHistory(lookups=[DONE]), stream, clock)
    assert outcome.history is HISTORY and stream.connects == 1


def test_stall_timeout_must_be_positive():
    """A zero stall timeout would spin: refused."""
    clock = Clock()
    with pytest.raises(ValueError):
        follow(FakeClient(lookups=[RUNNING]), FakeStream(clock), clock, stall_timeout=0)


def test_outcome_from_history_for_a_redelivered_job():
    """A prompt found finished: success gives an outcome, a recorded error is raised."""
    assert PromptOutcome.from_history(HISTORY).history is HISTORY
    prompt_id = load("09")["prompt_ids"]["09a"]
    entry = HistoryEntry.from_dict(prompt_id, history_entry(load("09"), prompt_id)[prompt_id])
    with pytest.raises(ExecutionInterrupted):
        PromptOutcome.from_history(entry)
