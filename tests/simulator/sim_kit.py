"""Helpers for the simulator tests: recorded traces, a WebSocket recorder, JSON shapes.

Traces are read from ``tests/protocol``, the suite's copy of the recorded ComfyUI 0.3.64 traces.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import requests
import websocket

REPO = Path(__file__).resolve().parents[2]
TRACE_DIRS = (REPO / "tests" / "protocol",)
SEED_DIRS = (REPO / "tests" / "seed",)
TIMEOUT = 10.0


def _find(dirs: tuple[Path, ...], pattern: str) -> Path:
    for directory in dirs:
        found = sorted(directory.glob(pattern))
        if found:
            return found[0]
    if os.environ.get("CI"):
        raise FileNotFoundError(f"{pattern} not found in {dirs}")
    pytest.skip(
        f"protocol data {pattern} not found in {[str(d) for d in dirs]}", allow_module_level=True
    )


@cache
def trace(prefix: str) -> dict[str, Any]:
    """A recorded scenario by its number, e.g. ``trace("07")``."""
    return json.loads(_find(TRACE_DIRS, f"{prefix}_*.json").read_text())


def recorded_object_info() -> dict[str, Any]:
    return json.loads(_find(TRACE_DIRS, "object_info.json").read_text())


def seed_workflow() -> dict[str, Any]:
    return json.loads(_find(SEED_DIRS, "SD1.5_text2image_API.json").read_text())


def http_call(scenario: dict[str, Any], note_part: str, path_prefix: str = "") -> dict[str, Any]:
    """The recorded HTTP call whose note contains ``note_part`` and path starts with the prefix."""
    for call in scenario["http"]:
        if note_part in (call.get("note") or "") and call["path"].startswith(path_prefix):
            return call
    raise KeyError(note_part)


def recorded_types(socket: dict[str, Any]) -> list[str]:
    """Message types a recorded socket received (binary frames as ``<binary NAME>``)."""
    out = []
    for frame in socket["received"]:
        if frame["frame"] == "text":
            out.append(frame["msg"]["type"])
        elif frame["frame"] == "binary":
            out.append(f"<binary {frame['event_type_name']}>")
    return out


def shape(value: Any) -> Any:
    """The JSON skeleton of a value: key names and value kinds, not the values."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(item) for item in value]
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if value is None:
        return "null"
    return "str"


class Recorder:
    """A WebSocket client that records every frame in a background thread."""

    def __init__(
        self, base_url: str, client_id: str | None = None, *, feature_flags: bool = False
    ) -> None:
        self.client_id = client_id
        url = base_url.replace("http://", "ws://") + "/ws"
        if client_id is not None:
            url += f"?clientId={client_id}"
        self.ws = websocket.create_connection(url, timeout=TIMEOUT)
        if feature_flags:
            self.ws.send(
                json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
            )
        self.frames: list[Any] = []  # dict for text, bytes for binary, ("closed", exc) at the end
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            try:
                opcode, data = self.ws.recv_data()
            except Exception as ex:  # closed by us or dropped by the server
                self._append(("closed", ex))
                return
            if opcode == websocket.ABNF.OPCODE_TEXT:
                self._append(json.loads(data.decode()))
            elif opcode == websocket.ABNF.OPCODE_BINARY:
                self._append(bytes(data))
            elif opcode == websocket.ABNF.OPCODE_CLOSE:
                self._append(("closed", "close frame"))
                return

    def _append(self, item: Any) -> None:
        with self._changed:
            self.frames.append(item)
            self._changed.notify_all()

    def wait_for(
        self, predicate: Callable[[list[Any]], bool], timeout: float = TIMEOUT
    ) -> list[Any]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self.frames):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out; frames so far: {self.types()}")
                self._changed.wait(left)
            return list(self.frames)

    def wait_message(self, kind: str, timeout: float = TIMEOUT, **data: Any) -> dict[str, Any]:
        """The first text message of this type whose data contains ``data``."""

        def match(frame: Any) -> bool:
            return (
                isinstance(frame, dict)
                and frame["type"] == kind
                and all(frame["data"].get(k) == v for k, v in data.items())
            )

        frames = self.wait_for(lambda fs: any(match(f) for f in fs), timeout)
        return next(f for f in frames if match(f))

    def wait_done(self, prompt_id: str, timeout: float = TIMEOUT) -> list[Any]:
        """Frames up to the final ``executing {node: null}`` of this prompt."""
        self.wait_message("executing", timeout, node=None, prompt_id=prompt_id)
        return list(self.frames)

    def wait_closed(self, timeout: float = TIMEOUT) -> Any:
        frames = self.wait_for(lambda fs: bool(fs) and isinstance(fs[-1], tuple), timeout)
        return frames[-1][1]

    def texts(self) -> list[dict[str, Any]]:
        return [f for f in list(self.frames) if isinstance(f, dict)]

    def types(self) -> list[str]:
        out = []
        for frame in list(self.frames):
            if isinstance(frame, dict):
                out.append(frame["type"])
            elif isinstance(frame, bytes):
                kind = int.from_bytes(frame[:4], "big")
                out.append(
                    {1: "<binary PREVIEW_IMAGE>", 4: "<binary PREVIEW_IMAGE_WITH_METADATA>"}.get(
                        kind, "<binary>"
                    )
                )
        return out

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:  # already gone
            pass


def submit(
    base_url: str, prompt: dict[str, Any], client_id: str | None = None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"prompt": prompt, **extra}
    if client_id is not None:
        body["client_id"] = client_id
    response = requests.post(f"{base_url}/prompt", json=body, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    return response.json()


def new_id() -> str:
    return str(uuid.uuid4())


def history(base_url: str, prompt_id: str) -> dict[str, Any]:
    return requests.get(f"{base_url}/history/{prompt_id}", timeout=TIMEOUT).json()


def empty_image(
    color: int = 0, *, size: int = 8, batch: int = 1, prefix: str = "t"
) -> dict[str, Any]:
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": size, "height": size, "batch_size": batch, "color": color},
        },
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}},
    }


def blur_chain(color: int, blurs: int = 3, output: str = "PreviewImage") -> dict[str, Any]:
    """EmptyImage -> ImageBlur x n -> PreviewImage (ids 1, 10, 11, ..., 99), like traces 09-12."""
    prompt: dict[str, Any] = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": color},
        }
    }
    previous = "1"
    for index in range(blurs):
        node_id = str(10 + index)
        prompt[node_id] = {
            "class_type": "ImageBlur",
            "inputs": {"image": [previous, 0], "blur_radius": 31, "sigma": 10.0},
        }
        previous = node_id
    prompt["99"] = {"class_type": output, "inputs": {"images": [previous, 0]}}
    return prompt
