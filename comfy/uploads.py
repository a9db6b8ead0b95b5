"""Files uploaded to ComfyUI's input folder (``POST /upload/image``), to feed LoadImage nodes.

Without ``overwrite`` ComfyUI keeps an existing file: same name and same bytes gives the same
name back, different bytes give ``name (1).png``. Always use the name it answers with.
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class UploadedFile:
    """Where ComfyUI stored an upload; ``reference`` is the value for LoadImage's ``image``."""

    name: str
    subfolder: str
    type: str

    @property
    def reference(self) -> str:
        return f"{self.subfolder}/{self.name}" if self.subfolder else self.name

    @classmethod
    def from_dict(cls, body: Any) -> UploadedFile:
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            raise ValueError("upload answer has no name")
        return cls(
            name=body["name"],
            subfolder=str(body.get("subfolder") or ""),
            type=str(body.get("type") or "input"),
        )


def content_type(filename: str) -> str:
    """MIME type guessed from the file name (``application/octet-stream`` when unknown)."""
    return mimetypes.guess_type(filename)[0] or "application/octet-stream"
