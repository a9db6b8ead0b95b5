"""Binary WebSocket frames of ComfyUI: a big-endian u32 event type, then a type-specific payload.

* 1 PREVIEW_IMAGE: u32 image format (1 JPEG, 2 PNG), then the image bytes. No node or prompt id:
  the frame belongs to the node of the preceding ``executing``/``progress`` message.
* 3 TEXT: u32 length of the node id, the node id, then UTF-8 text (node progress text).
* 4 PREVIEW_IMAGE_WITH_METADATA (only after the client sent ``feature_flags`` with
  ``supports_preview_metadata``): u32 metadata length, metadata JSON
  ``{node_id, prompt_id, display_node_id, parent_node_id, real_node_id, image_type}``, image bytes.

``decode_frame`` raises ``FrameError`` for anything else; ``events.parse_binary`` turns that into an
``Unknown`` event so a bad frame never breaks the reader.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

PREVIEW_IMAGE = 1
TEXT = 3
PREVIEW_IMAGE_WITH_METADATA = 4

_IMAGE_FORMATS = {1: "jpeg", 2: "png"}
_U32 = struct.Struct(">I")


class FrameError(ValueError):
    """Raised when a binary frame is truncated, malformed, or of an unknown event type."""

    def __init__(self, reason: str, *, event_type: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.event_type = event_type


@dataclass(frozen=True)
class PreviewImage:
    """An image pushed over the socket (latent preview, or SaveImageWebsocket output).

    ``image_format`` is ``"png"``, ``"jpeg"``, another MIME subtype from the metadata, or
    ``"unknown-<n>"``. ``metadata`` is None for type-1 frames (no node or prompt id in them).
    """

    image_format: str
    data: bytes
    metadata: dict[str, Any] | None = None

    @property
    def prompt_id(self) -> str | None:
        value = (self.metadata or {}).get("prompt_id")
        return None if value is None else str(value)

    @property
    def node_id(self) -> str | None:
        value = (self.metadata or {}).get("node_id")
        return None if value is None else str(value)


@dataclass(frozen=True)
class ProgressText:
    """Progress text a node sent for display (binary type 3)."""

    node_id: str
    text: str

    @property
    def prompt_id(self) -> None:
        return None


def _u32(data: bytes, offset: int, what: str) -> int:
    if len(data) < offset + 4:
        raise FrameError(f"frame too short for {what} ({len(data)} bytes)")
    value: int = _U32.unpack_from(data, offset)[0]
    return value


def decode_frame(data: bytes) -> PreviewImage | ProgressText:
    """Decode one binary frame; raises ``FrameError`` if it is not one of the known layouts."""
    event_type = _u32(data, 0, "the event type")
    if event_type == PREVIEW_IMAGE:
        image_format = _u32(data, 4, "the image format")
        return PreviewImage(
            image_format=_IMAGE_FORMATS.get(image_format, f"unknown-{image_format}"),
            data=bytes(data[8:]),
        )
    if event_type == TEXT:
        length = _u32(data, 4, "the node id length")
        if len(data) < 8 + length:
            raise FrameError("text frame shorter than its node id length", event_type=event_type)
        node_id = data[8 : 8 + length].decode("utf-8", errors="replace")
        return ProgressText(node_id=node_id, text=data[8 + length :].decode("utf-8", "replace"))
    if event_type == PREVIEW_IMAGE_WITH_METADATA:
        length = _u32(data, 4, "the metadata length")
        if len(data) < 8 + length:
            raise FrameError("preview frame shorter than its metadata", event_type=event_type)
        try:
            metadata = json.loads(data[8 : 8 + length].decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise FrameError(f"preview metadata is not JSON: {exc}", event_type=event_type) from exc
        if not isinstance(metadata, dict):
            raise FrameError("preview metadata is not a JSON object", event_type=event_type)
        image_type = str(metadata.get("image_type") or "")
        return PreviewImage(
            image_format=image_type.rpartition("/")[2] or "unknown",
            data=bytes(data[8 + length :]),
            metadata=metadata,
        )
    raise FrameError(f"unknown binary event type {event_type}", event_type=event_type)
