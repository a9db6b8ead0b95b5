"""Recorded ComfyUI 0.3.64 traces as test data: ``tests/protocol`` (the suite's copy).

Text frames are replayed as the JSON the server sent; binary frames were recorded only as a
decoded header, so they are rebuilt here from that header with placeholder image bytes.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from comfyfarm.comfy.events import Event, parse_binary, parse_text

_REPO = Path(__file__).resolve().parents[3]
TRACES = _REPO / "tests" / "protocol"
PNG_MAGIC = bytes.fromhex("89504e470d0a1a0a")


@cache
def load(name: str) -> dict[str, Any]:
    """One trace file by name prefix, e.g. ``load("07")``."""
    (path,) = TRACES.glob(f"{name}*.json")
    return json.loads(path.read_text())


def trace_names() -> list[str]:
    """Traces that recorded WebSocket traffic."""
    return sorted(
        path.name[:2] for path in TRACES.glob("[0-9]*.json") if "ws" in load(path.name[:2])
    )


def rebuild_binary(frame: dict[str, Any]) -> bytes:
    """The bytes of a recorded binary frame: real header, placeholder image of the same length."""
    event_type = frame["event_type_u32be"]
    if event_type == 1:
        header = struct.pack(">II", 1, frame["image_format_u32be"])
    elif event_type == 4:
        metadata = json.dumps(frame["metadata_json"]).encode()
        header = struct.pack(">II", 4, len(metadata)) + metadata
    else:
        raise ValueError(f"no rebuild for binary type {event_type}")
    body = PNG_MAGIC + bytes(max(0, frame["length"] - len(header) - len(PNG_MAGIC)))
    return header + body


def socket_frames(trace: dict[str, Any], socket: int = 0) -> Iterator[tuple[float, dict[str, Any]]]:
    """``(seconds, frame)`` for every text/binary frame one recorded socket received."""
    for frame in trace["ws"][socket]["received"]:
        if frame["frame"] in ("text", "binary"):
            yield frame["t_ms"] / 1000.0, frame


def to_event(frame: dict[str, Any]) -> Event:
    if frame["frame"] == "text":
        return parse_text(json.dumps(frame["msg"]))
    return parse_binary(rebuild_binary(frame))


def socket_events(trace: dict[str, Any], socket: int = 0) -> list[tuple[float, Event]]:
    """``(seconds, event)`` for one recorded socket, parsed with the library."""
    return [(at, to_event(frame)) for at, frame in socket_frames(trace, socket)]


def all_text_messages() -> list[tuple[str, dict[str, Any]]]:
    """``(trace name, message)`` for every text frame of every trace."""
    messages = []
    for name in trace_names():
        trace = load(name)
        for socket in range(len(trace.get("ws", []))):
            for _, frame in socket_frames(trace, socket):
                if frame["frame"] == "text":
                    messages.append((name, frame["msg"]))
    return messages


def http_calls(trace: dict[str, Any], method: str, path_prefix: str) -> list[dict[str, Any]]:
    return [
        call
        for call in trace["http"]
        if call["method"] == method and call["path"].startswith(path_prefix)
    ]


def history_entry(trace: dict[str, Any], prompt_id: str) -> dict[str, Any]:
    """The recorded ``/history/{prompt_id}`` body (``{prompt_id: entry}``)."""
    for call in http_calls(trace, "GET", f"/history/{prompt_id}"):
        if call.get("response_json"):
            return call["response_json"]
    raise KeyError(prompt_id)
