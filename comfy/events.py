"""Typed events of the ComfyUI WebSocket, parsed at the edge.

Text frames are JSON ``{"type": ..., "data": {...}}``; ``parse_text`` maps every known type to a
frozen dataclass and anything else (unknown type, missing fields, invalid JSON) to ``Unknown``.
Binary frames go through ``frames.decode_frame``; ``parse_binary`` never raises either.
Unknown fields are ignored, so newer ComfyUI versions keep working.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from comfyfarm.comfy.frames import FrameError, PreviewImage, ProgressText, decode_frame

__all__ = [
    "Event",
    "ExecutionCached",
    "ExecutionError",
    "ExecutionInterrupted",
    "ExecutionStart",
    "ExecutionSuccess",
    "Executed",
    "Executing",
    "FeatureFlags",
    "NodeProgress",
    "PreviewImage",
    "Progress",
    "ProgressState",
    "ProgressText",
    "Status",
    "Unknown",
    "event_prompt_id",
    "parse_binary",
    "parse_text",
]


@dataclass(frozen=True)
class Status:
    """Queue size; sent on connect (with ``sid``) and broadcast on every queue change."""

    queue_remaining: int | None
    sid: str | None = None


@dataclass(frozen=True)
class ExecutionStart:
    """The prompt left the queue and started."""

    prompt_id: str
    timestamp: int | None = None


@dataclass(frozen=True)
class ExecutionCached:
    """Nodes whose outputs came from the cache (not executed, no ``executing`` for them)."""

    prompt_id: str
    nodes: tuple[str, ...]
    timestamp: int | None = None


@dataclass(frozen=True)
class Executing:
    """A node starts; ``node`` None means the prompt is finished, whatever the outcome.

    ``prompt_id`` is None in the ``executing`` the server re-sends to a socket that reconnects
    mid-run, so that one cannot be attributed to a prompt.
    """

    prompt_id: str | None
    node: str | None
    display_node: str | None = None


@dataclass(frozen=True)
class Progress:
    """Step progress of one node (``value`` of ``max``)."""

    prompt_id: str | None
    node: str | None
    value: float
    max: float


@dataclass(frozen=True)
class NodeProgress:
    """One node's entry in ``progress_state``: state is ``running``, ``finished`` or ``error``."""

    node_id: str
    state: str
    value: float
    max: float
    display_node_id: str | None = None
    parent_node_id: str | None = None
    real_node_id: str | None = None


@dataclass(frozen=True)
class ProgressState:
    """Per-node progress of a prompt (nodes not started yet are omitted)."""

    prompt_id: str
    nodes: Mapping[str, NodeProgress]


@dataclass(frozen=True)
class Executed:
    """A node with UI output finished (also re-sent for cached output nodes)."""

    prompt_id: str
    node: str
    output: dict[str, Any]
    display_node: str | None = None


@dataclass(frozen=True)
class ExecutionSuccess:
    """All nodes ran; history is written just after this (then ``executing`` null)."""

    prompt_id: str
    timestamp: int | None = None


@dataclass(frozen=True)
class ExecutionError:
    """A node raised; the prompt stops (``executing`` null follows)."""

    prompt_id: str
    node_id: str | None
    node_type: str | None
    exception_type: str
    exception_message: str
    traceback: tuple[str, ...] = ()
    executed: tuple[str, ...] = ()
    current_inputs: dict[str, Any] = field(default_factory=dict)
    timestamp: int | None = None


@dataclass(frozen=True)
class ExecutionInterrupted:
    """The prompt was interrupted at ``node_id`` (``executing`` null follows)."""

    prompt_id: str
    node_id: str | None
    node_type: str | None
    executed: tuple[str, ...] = ()
    timestamp: int | None = None


@dataclass(frozen=True)
class FeatureFlags:
    """The server's answer to our ``feature_flags`` message."""

    flags: dict[str, Any]


@dataclass(frozen=True)
class Unknown:
    """Anything we could not parse: an unknown type, a malformed message, a garbage frame."""

    type: str
    data: Any
    reason: str = ""


Event = (
    Status
    | ExecutionStart
    | ExecutionCached
    | Executing
    | Progress
    | ProgressState
    | Executed
    | ExecutionSuccess
    | ExecutionError
    | ExecutionInterrupted
    | FeatureFlags
    | PreviewImage
    | ProgressText
    | Unknown
)


class _Malformed(ValueError):
    """A known message type whose data does not have the expected shape."""


def _str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if value is None or isinstance(value, dict | list):
        raise _Malformed(f"{key!r} missing or not a scalar")
    return str(value)


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return None if value is None or isinstance(value, dict | list) else str(value)


def _number(data: Mapping[str, Any], key: str, default: float = 0.0) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Malformed(f"{key!r} is not a number")
    return float(value)


def _opt_int(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _strings(data: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = data.get(key) or []
    if not isinstance(value, list):
        raise _Malformed(f"{key!r} is not a list")
    return tuple(str(item) for item in value)


def _dict(data: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key) or {}
    if not isinstance(value, dict):
        raise _Malformed(f"{key!r} is not an object")
    return value


def _status(data: Mapping[str, Any]) -> Status:
    exec_info = _dict(_dict(data, "status"), "exec_info")
    return Status(queue_remaining=_opt_int(exec_info, "queue_remaining"), sid=_opt_str(data, "sid"))


def _progress_state(data: Mapping[str, Any]) -> ProgressState:
    nodes: dict[str, NodeProgress] = {}
    for key, entry in _dict(data, "nodes").items():
        if not isinstance(entry, dict):
            raise _Malformed(f"progress_state node {key!r} is not an object")
        nodes[str(key)] = NodeProgress(
            node_id=_opt_str(entry, "node_id") or str(key),
            state=_opt_str(entry, "state") or "",
            value=_number(entry, "value"),
            max=_number(entry, "max", 1.0),
            display_node_id=_opt_str(entry, "display_node_id"),
            parent_node_id=_opt_str(entry, "parent_node_id"),
            real_node_id=_opt_str(entry, "real_node_id"),
        )
    return ProgressState(prompt_id=_str(data, "prompt_id"), nodes=nodes)


def _execution_error(data: Mapping[str, Any]) -> ExecutionError:
    return ExecutionError(
        prompt_id=_str(data, "prompt_id"),
        node_id=_opt_str(data, "node_id"),
        node_type=_opt_str(data, "node_type"),
        exception_type=_opt_str(data, "exception_type") or "",
        exception_message=_opt_str(data, "exception_message") or "",
        traceback=_strings(data, "traceback"),
        executed=_strings(data, "executed"),
        current_inputs=_dict(data, "current_inputs"),
        timestamp=_opt_int(data, "timestamp"),
    )


_PARSERS: dict[str, Callable[[Mapping[str, Any]], Event]] = {
    "status": _status,
    "execution_start": lambda d: ExecutionStart(_str(d, "prompt_id"), _opt_int(d, "timestamp")),
    "execution_cached": lambda d: ExecutionCached(
        _str(d, "prompt_id"), _strings(d, "nodes"), _opt_int(d, "timestamp")
    ),
    "executing": lambda d: Executing(
        _opt_str(d, "prompt_id"), _opt_str(d, "node"), _opt_str(d, "display_node")
    ),
    "progress": lambda d: Progress(
        _opt_str(d, "prompt_id"), _opt_str(d, "node"), _number(d, "value"), _number(d, "max", 1.0)
    ),
    "progress_state": _progress_state,
    "executed": lambda d: Executed(
        _str(d, "prompt_id"), _str(d, "node"), _dict(d, "output"), _opt_str(d, "display_node")
    ),
    "execution_success": lambda d: ExecutionSuccess(_str(d, "prompt_id"), _opt_int(d, "timestamp")),
    "execution_error": _execution_error,
    "execution_interrupted": lambda d: ExecutionInterrupted(
        _str(d, "prompt_id"),
        _opt_str(d, "node_id"),
        _opt_str(d, "node_type"),
        _strings(d, "executed"),
        _opt_int(d, "timestamp"),
    ),
    "feature_flags": lambda d: FeatureFlags(dict(d)),
}


def parse_message(message: Any) -> Event:
    """Map an already decoded ``{"type", "data"}`` message to its event; never raises."""
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return Unknown(type="invalid", data=message, reason="not a {type, data} object")
    kind: str = message["type"]
    data = message.get("data")
    parser = _PARSERS.get(kind)
    if parser is None:
        return Unknown(type=kind, data=data, reason="unknown message type")
    if not isinstance(data, dict):
        return Unknown(type=kind, data=data, reason="data is not an object")
    try:
        return parser(data)
    except _Malformed as exc:
        return Unknown(type=kind, data=data, reason=f"malformed {kind}: {exc}")


def parse_text(text: str) -> Event:
    """Parse one text frame; invalid JSON or unexpected shapes give ``Unknown``, never an error."""
    try:
        message = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        return Unknown(type="invalid", data=text[:1000], reason=f"not JSON: {exc}")
    return parse_message(message)


def parse_binary(data: bytes) -> Event:
    """Parse one binary frame (types 1, 3, 4); garbage gives ``Unknown``, never an error."""
    try:
        return decode_frame(data)
    except FrameError as exc:
        kind = "binary" if exc.event_type is None else f"binary:{exc.event_type}"
        return Unknown(type=kind, data=bytes(data[:64]), reason=exc.reason)


def event_prompt_id(event: Event) -> str | None:
    """The prompt an event belongs to, if the event says so."""
    if isinstance(event, Status | FeatureFlags | Unknown | ProgressText):
        return None
    return event.prompt_id
