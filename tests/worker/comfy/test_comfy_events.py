"""Parsing WebSocket frames into typed events (text and binary), checked on the recorded traces."""

from __future__ import annotations

import json
import random
import struct

import pytest
from comfy_traces import (
    PNG_MAGIC,
    all_text_messages,
    load,
    rebuild_binary,
    socket_frames,
    trace_names,
)

from comfyfarm.comfy import events as ev
from comfyfarm.comfy.events import parse_binary, parse_text

EXPECTED_CLASS = {
    "status": ev.Status,
    "execution_start": ev.ExecutionStart,
    "execution_cached": ev.ExecutionCached,
    "executing": ev.Executing,
    "progress": ev.Progress,
    "progress_state": ev.ProgressState,
    "executed": ev.Executed,
    "execution_success": ev.ExecutionSuccess,
    "execution_error": ev.ExecutionError,
    "execution_interrupted": ev.ExecutionInterrupted,
    "feature_flags": ev.FeatureFlags,
}


def _text(kind: str, data: object) -> str:
    return json.dumps({"type": kind, "data": data})


@pytest.mark.parametrize("trace_name", trace_names())
def test_every_recorded_text_message_parses_to_its_type(trace_name):
    """Each text frame of a trace becomes the dataclass of its type, never Unknown."""
    messages = [m for name, m in all_text_messages() if name == trace_name]
    for message in messages:
        event = parse_text(json.dumps(message))
        assert isinstance(event, EXPECTED_CLASS[message["type"]]), message
        prompt_id = message["data"].get("prompt_id")
        if prompt_id is not None:
            assert ev.event_prompt_id(event) == prompt_id


def test_status_on_connect_carries_sid_and_queue():
    """The first status message gives the socket id and the queue size."""
    event = parse_text(
        _text("status", {"status": {"exec_info": {"queue_remaining": 3}}, "sid": "x"})
    )
    assert event == ev.Status(queue_remaining=3, sid="x")


def test_executing_null_is_the_end_marker():
    """``executing`` with node null parses with node None and keeps the prompt id."""
    event = parse_text(_text("executing", {"node": None, "prompt_id": "p"}))
    assert event == ev.Executing(prompt_id="p", node=None)


def test_executing_resent_on_reconnect_has_no_prompt_id():
    """The ``executing`` re-sent to a reconnecting socket (trace 12) has no prompt id."""
    trace = load("12")
    resent = [f["msg"] for _, f in socket_frames(trace, 1) if f["frame"] == "text"][1]
    event = parse_text(json.dumps(resent))
    assert event == ev.Executing(prompt_id=None, node="11")


def test_execution_error_keeps_node_exception_and_traceback():
    """``execution_error`` (trace 07) carries node, exception type/message and the traceback."""
    message = next(
        f["msg"]
        for _, f in socket_frames(load("07"))
        if f["frame"] == "text" and f["msg"]["type"] == "execution_error"
    )
    event = parse_text(json.dumps(message))
    assert isinstance(event, ev.ExecutionError)
    assert (event.node_id, event.node_type) == ("3", "LoadImage")
    assert event.exception_type == "PIL.UnidentifiedImageError"
    assert "cannot identify image file" in event.exception_message
    assert event.traceback and event.executed == ("1", "2")
    assert event.current_inputs == {"image": ["proto_corrupt.png"]}


def test_progress_state_nodes_are_typed():
    """``progress_state`` maps node ids to NodeProgress entries."""
    data = {
        "prompt_id": "p",
        "nodes": {"3": {"value": 2, "max": 4, "state": "running", "node_id": "3"}},
    }
    event = parse_text(_text("progress_state", data))
    assert isinstance(event, ev.ProgressState)
    assert event.nodes["3"] == ev.NodeProgress(node_id="3", state="running", value=2.0, max=4.0)


@pytest.mark.parametrize(
    "text,reason",
    [
        ('{"type": "logs", "data": {"entries": []}}', "unknown message type"),
        ("not json{", "not JSON"),
        ("[1, 2]", "not a {type, data} object"),
        ('{"data": {}}', "not a {type, data} object"),
        ('{"type": "executing", "data": "node 3"}', "data is not an object"),
        ('{"type": "execution_start", "data": {}}', "malformed execution_start"),
        ('{"type": "progress", "data": {"value": "x", "max": 3}}', "malformed progress"),
        ('{"type": "execution_cached", "data": {"prompt_id": "p", "nodes": 5}}', "malformed"),
        ('{"type": "progress_state", "data": {"prompt_id": "p", "nodes": {"1": 3}}}', "malformed"),
        ("", "not JSON"),
    ],
)
def test_unexpected_text_becomes_unknown(text, reason):
    """Unknown types and malformed messages give an Unknown event with a reason, no exception."""
    event = parse_text(text)
    assert isinstance(event, ev.Unknown)
    assert reason in event.reason


def test_unknown_fields_are_ignored():
    """Extra fields a newer ComfyUI may add do not break parsing."""
    event = parse_text(_text("execution_success", {"prompt_id": "p", "timestamp": 5, "new": 1}))
    assert event == ev.ExecutionSuccess(prompt_id="p", timestamp=5)


def test_feature_flags_reply():
    """The server's feature_flags answer keeps its flags."""
    event = parse_text(_text("feature_flags", {"supports_preview_metadata": True}))
    assert event == ev.FeatureFlags(flags={"supports_preview_metadata": True})


# -- binary frames ------------------------------------------------------------------------------


def _recorded_binary(socket: int) -> dict:
    return next(f for _, f in socket_frames(load("08"), socket) if f["frame"] == "binary")


def test_binary_type1_preview_png():
    """Type 1 (trace 08, client without feature flags): format PNG, image bytes, no metadata."""
    frame = _recorded_binary(0)
    event = parse_binary(rebuild_binary(frame))
    assert isinstance(event, ev.PreviewImage)
    assert event.image_format == "png" and event.metadata is None
    assert event.data.startswith(PNG_MAGIC) and len(event.data) == frame["length"] - 8
    assert event.prompt_id is None


def test_binary_type1_jpeg():
    """Type 1 with format 1 is a JPEG preview (latent previews)."""
    event = parse_binary(struct.pack(">II", 1, 1) + b"\xff\xd8jpeg")
    assert event == ev.PreviewImage(image_format="jpeg", data=b"\xff\xd8jpeg")


def test_binary_type4_preview_with_metadata():
    """Type 4 (trace 08, client that sent feature flags) carries node and prompt id."""
    frame = _recorded_binary(1)
    event = parse_binary(rebuild_binary(frame))
    assert isinstance(event, ev.PreviewImage)
    assert event.metadata == frame["metadata_json"]
    assert event.image_format == "png"
    assert event.prompt_id == frame["metadata_json"]["prompt_id"] and event.node_id == "2"
    assert event.data.startswith(PNG_MAGIC)


def test_binary_type3_progress_text():
    """Type 3 is node id length, node id, then UTF-8 text."""
    node = b"12"
    event = parse_binary(struct.pack(">II", 3, len(node)) + node + "step 3/20 ✓".encode())
    assert event == ev.ProgressText(node_id="12", text="step 3/20 ✓")


@pytest.mark.parametrize(
    "data,kind",
    [
        (b"", "binary"),
        (b"\x00\x00", "binary"),
        (struct.pack(">I", 1), "binary"),
        (struct.pack(">I", 9) + b"whatever", "binary:9"),
        (struct.pack(">II", 4, 1000) + b"{}", "binary:4"),
        (struct.pack(">II", 4, 5) + b"nope!" + PNG_MAGIC, "binary:4"),
        (struct.pack(">II", 4, 2) + b"[]", "binary:4"),
        (struct.pack(">II", 4, 2) + b"\xff\xfe", "binary:4"),
        (struct.pack(">II", 3, 50) + b"short", "binary:3"),
    ],
)
def test_garbage_binary_becomes_unknown(data, kind):
    """Truncated, unknown or malformed binary frames give Unknown, never an exception."""
    event = parse_binary(data)
    assert isinstance(event, ev.Unknown)
    assert event.type == kind and event.reason


def test_random_bytes_never_raise():
    """Fuzz: random binary and text payloads always parse to some event."""
    rng = random.Random(1234)
    for _ in range(2000):
        blob = rng.randbytes(rng.randrange(0, 40))
        if rng.random() < 0.5:
            blob = struct.pack(">I", rng.choice([1, 3, 4])) + blob
        assert parse_binary(blob) is not None
        assert parse_text(blob.decode("utf-8", "replace")) is not None
