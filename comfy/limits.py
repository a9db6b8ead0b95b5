"""How much a ComfyUI may send us, and for how long: reading untrusted bodies within bounds.

A broken or hostile ComfyUI can answer ``/history`` with 200 MB, stream an endless ``/view``
file, or send one byte every second so that a per-read timeout never fires. Every body is
therefore read with ``read_bounded``: at most ``max_bytes`` (the announced ``Content-Length`` is
checked before anything is read, and compressed bodies are counted after inflating, a chunk at a
time), and no longer than a total ``deadline``. The WebSocket side applies
``max_ws_frame_bytes`` (``comfy.ws``).

Defaults are generous for real outputs (videos) and small for answers that are JSON. The farm
sets them from ``COMFYFARM_MAX_JSON_BYTES``, ``COMFYFARM_MAX_OUTPUT_BYTES`` and
``COMFYFARM_MAX_WS_FRAME_BYTES``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import requests
import urllib3.exceptions

from comfyfarm.comfy.errors import ComfyUnavailable, ResponseTooLarge

MIB = 1 << 20
DEFAULT_MAX_JSON_BYTES = 64 * MIB
DEFAULT_MAX_OUTPUT_BYTES = 4096 * MIB
DEFAULT_MAX_WS_FRAME_BYTES = 64 * MIB


class LimitSettings(Protocol):
    """What ``ComfyLimits.from_settings`` reads (``tasks.settings.Settings`` has it)."""

    @property
    def max_json_bytes(self) -> int: ...
    @property
    def max_output_bytes(self) -> int: ...
    @property
    def max_ws_frame_bytes(self) -> int: ...


@dataclass(frozen=True)
class ComfyLimits:
    """Largest JSON answer, largest ``/view`` file, largest WebSocket message (bytes)."""

    max_json_bytes: int = DEFAULT_MAX_JSON_BYTES
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES
    max_ws_frame_bytes: int = DEFAULT_MAX_WS_FRAME_BYTES

    @classmethod
    def from_settings(cls, settings: LimitSettings) -> ComfyLimits:
        return cls(
            max_json_bytes=settings.max_json_bytes,
            max_output_bytes=settings.max_output_bytes,
            max_ws_frame_bytes=settings.max_ws_frame_bytes,
        )


@dataclass(frozen=True)
class BodyLimit:
    """The bounds of one body: ``max_bytes`` named by ``setting``; ``deadline`` is a
    ``time.monotonic()`` time (None: no total bound) described by ``deadline_text``."""

    max_bytes: int
    setting: str
    deadline: float | None = None
    deadline_text: str = "the deadline"


def read_bounded(
    response: requests.Response, *, url: str, route: str, limit: BodyLimit, chunk_size: int
) -> Iterator[bytes]:
    """The body of ``response`` chunk by chunk, within ``limit``.

    Raises ``ResponseTooLarge`` (more than ``max_bytes``, announced or sent) and
    ``ComfyUnavailable`` (past the deadline, or the connection broke off). ``read1`` returns
    what has arrived instead of waiting for a full chunk, so the deadline is checked after every
    socket read (each one bounded by the request's read timeout).
    """
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit.max_bytes:
        raise ResponseTooLarge(url=url, route=route, limit=limit.max_bytes, setting=limit.setting)
    total = 0
    raw = response.raw
    try:
        while True:
            if limit.deadline is not None and time.monotonic() > limit.deadline:
                raise ComfyUnavailable(
                    url=url,
                    reason=f"GET {route}: body not complete within {limit.deadline_text} "
                    f"({total} bytes read)",
                )
            chunk = raw.read1(chunk_size)
            if not chunk:
                return
            total += len(chunk)
            if total > limit.max_bytes:
                raise ResponseTooLarge(
                    url=url, route=route, limit=limit.max_bytes, setting=limit.setting
                )
            yield chunk
    except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
        reason = str(exc) or type(exc).__name__
        raise ComfyUnavailable(url=url, reason=f"GET {route} broke off: {reason[:300]}") from exc
