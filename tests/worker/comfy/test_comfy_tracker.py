"""PromptTracker, the pure state machine, fed with the WebSocket sequences recorded from ComfyUI."""

from __future__ import annotations

import pytest
from comfy_traces import load, socket_events

from comfyfarm.comfy import events as ev
from comfyfarm.comfy.errors import ExecutionFailed, ExecutionInterrupted
from comfyfarm.comfy.tracker import PromptTracker


def run(tracker: PromptTracker, trace_name: str, socket: int = 0) -> PromptTracker:
    for at, event in socket_events(load(trace_name), socket):
        tracker.feed(event, at)
    return tracker


def test_success_finishes_on_executing_null():
    """Trace 01: success, per-node durations from executing transitions, output of node 2."""
    trace = load("01")
    tracker = run(PromptTracker(trace["prompt_id"]), "01")
    assert tracker.done and tracker.succeeded and tracker.failure is None
    assert tracker.cached_nodes == []
    assert set(tracker.node_durations) == {"1", "2"}
    # node 1 ran from its executing (22.2 ms) to node 2's (22.5 ms)
    assert tracker.node_durations["1"] == pytest.approx(0.0003, abs=1e-6)
    assert tracker.node_durations["2"] > 0
    assert tracker.outputs["2"]["images"][0]["filename"] == "proto_success_00001_.png"


def test_not_done_before_executing_null():
    """Execution_success alone does not finish: history is written only after it."""
    trace = load("01")
    tracker = PromptTracker(trace["prompt_id"])
    for at, event in socket_events(trace):
        tracker.feed(event, at)
        if isinstance(event, ev.ExecutionSuccess):
            assert tracker.succeeded and not tracker.done
    assert tracker.done


def test_cached_rerun_lists_cached_nodes_without_durations():
    """Trace 02: everything cached, no executing per node, executed re-sent with the old file."""
    trace = load("02")
    tracker = run(PromptTracker(trace["prompt_id"]), "02")
    assert tracker.done and tracker.succeeded
    assert tracker.cached_nodes == ["1", "2"]
    assert tracker.node_durations == {}
    assert tracker.outputs["2"]["images"][0]["filename"] == "proto_success_00001_.png"


def test_batch_outputs_and_three_node_durations():
    """Trace 03: a three-node chain gets three durations and two files in one executed."""
    trace = load("03")
    tracker = run(PromptTracker(trace["prompt_id"]), "03")
    assert set(tracker.node_durations) == {"1", "2", "3"}
    assert len(tracker.outputs["3"]["images"]) == 2


def test_execution_error_becomes_execution_failed():
    """Trace 07, first prompt: execution_error in LoadImage, then executing null."""
    first, _ = load("07")["prompt_ids"]
    tracker = run(PromptTracker(first), "07")
    assert tracker.done and not tracker.succeeded
    assert isinstance(tracker.failure, ExecutionFailed)
    assert tracker.failure.node_id == "3" and tracker.failure.node_type == "LoadImage"
    assert tracker.failure.exception_type == "PIL.UnidentifiedImageError"
    assert tracker.failure.traceback


def test_second_prompt_ignores_the_first_prompts_events():
    """Trace 07, second prompt: the first prompt's error and end marker are not ours."""
    first, second = load("07")["prompt_ids"]
    tracker = PromptTracker(second)
    for at, event in socket_events(load("07")):
        tracker.feed(event, at)
        if isinstance(event, ev.Executing) and event.prompt_id == first and event.node is None:
            assert not tracker.done and not tracker.started
    assert tracker.done and isinstance(tracker.failure, ExecutionFailed)
    assert tracker.cached_nodes == ["1", "2"]


def test_interrupt_becomes_execution_interrupted():
    """Trace 09a: execution_interrupted at node 12 (ImageBlur)."""
    prompt_id = load("09")["prompt_ids"]["09a"]
    tracker = run(PromptTracker(prompt_id), "09")
    assert tracker.done
    assert isinstance(tracker.failure, ExecutionInterrupted)
    assert (tracker.failure.node_id, tracker.failure.node_type) == ("12", "ImageBlur")
    assert tracker.node_durations["10"] == pytest.approx(1.3293, abs=1e-3)


def test_job_queued_behind_an_interrupted_one_succeeds():
    """Trace 09d: the quick prompt pending behind the interrupted one still succeeds."""
    ids = load("09")["prompt_ids"]
    slow, quick = PromptTracker(ids["09d_slow"]), PromptTracker(ids["09d_quick"])
    for at, event in socket_events(load("09")):
        slow.feed(event, at)
        quick.feed(event, at)
    assert isinstance(slow.failure, ExecutionInterrupted)
    assert quick.done and quick.succeeded and quick.failure is None


def test_many_prompts_on_one_socket_each_tracked_separately():
    """Trace 09: five prompts interleaved on one socket, each tracker sees only its own."""
    trace = load("09")
    trackers = {name: PromptTracker(pid) for name, pid in trace["prompt_ids"].items()}
    for at, event in socket_events(trace):
        owners = [name for name, t in trackers.items() if t.feed(event, at)]
        assert len(owners) <= 1
    assert all(t.done for t in trackers.values())
    assert [n for n, t in trackers.items() if t.succeeded] == ["09c", "09d_quick"]


def test_reconnected_socket_continues_and_ignores_the_resent_executing():
    """Trace 12b: after a reconnect, the prompt-less executing is ignored, the rest is tracked."""
    prompt_id = load("12")["prompt_ids"]["12b_reconnect"]
    tracker = PromptTracker(prompt_id)
    run(tracker, "12", socket=0)
    assert tracker.current_node == "11" and not tracker.done
    resent = ev.Executing(prompt_id=None, node="11")
    assert tracker.feed(resent, 7.6669) is False
    run(tracker, "12", socket=1)
    assert tracker.done and tracker.succeeded
    assert "99" in tracker.outputs and "12" in tracker.node_durations


def test_previews_without_prompt_id_count_only_while_running():
    """Type-1 previews carry no prompt id: ours while our prompt runs, not before."""
    tracker = PromptTracker("p")
    preview = ev.PreviewImage(image_format="png", data=b"x")
    assert tracker.feed(preview, 0.0) is False
    tracker.feed(ev.ExecutionStart(prompt_id="p"), 1.0)
    assert tracker.feed(preview, 2.0) is True
    assert tracker.last_event_at == 2.0


def test_status_broadcasts_are_not_ours():
    """Status messages never count as activity of our prompt."""
    tracker = PromptTracker("p")
    tracker.feed(ev.ExecutionStart(prompt_id="p"), 0.0)
    assert tracker.feed(ev.Status(queue_remaining=1), 1.0) is False
    assert tracker.last_event_at == 0.0


def test_events_after_the_end_are_ignored():
    """Once finished, later events (a duplicate prompt id run) change nothing."""
    trace = load("01")
    tracker = run(PromptTracker(trace["prompt_id"]), "01")
    durations = dict(tracker.node_durations)
    assert tracker.feed(ev.Executing(prompt_id=trace["prompt_id"], node="1"), 99.0) is False
    assert tracker.node_durations == durations


def test_repeated_executing_of_the_same_node_does_not_restart_it():
    """A node re-announced while running keeps its start time."""
    tracker = PromptTracker("p")
    tracker.feed(ev.Executing(prompt_id="p", node="5"), 1.0)
    tracker.feed(ev.Executing(prompt_id="p", node="5"), 2.0)
    tracker.feed(ev.Executing(prompt_id="p", node=None), 4.0)
    assert tracker.node_durations == {"5": 3.0}
