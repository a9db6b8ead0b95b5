"""Input files: a parameter that names a local image (or an http(s) URL) for a LoadImage-like node.

The job only records an ``InputRef(node_id, input_name, source)``; the worker uploads the file to
its ComfyUI and sets the input to the uploaded name. Here a local file is checked before anything
is queued: it must exist, be a readable regular file of at most ``MAX_INPUT_BYTES`` (ComfyUI's
default upload limit, 100 MiB) and, for image inputs, start with the magic bytes of an image
format ComfyUI reads (PNG, JPEG, GIF, WebP, BMP, TIFF). URLs are recorded as given (the worker
fetches them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from comfyfarm.workflows.errors import InputFileError
from comfyfarm.workflows.schema import InputSpec

MAX_INPUT_BYTES = 100 * 1024 * 1024
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")
_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "PNG"),
    (b"\xff\xd8\xff", 0, "JPEG"),
    (b"GIF87a", 0, "GIF"),
    (b"GIF89a", 0, "GIF"),
    (b"WEBP", 8, "WebP"),  # after "RIFF" + size
    (b"BM", 0, "BMP"),
    (b"II*\x00", 0, "TIFF"),
    (b"MM\x00*", 0, "TIFF"),
)


@dataclass(frozen=True)
class InputRef:
    """A file the worker must upload and put into ``node_id.input_name`` before submitting."""

    node_id: str
    input_name: str
    source: str  # absolute local path or http(s) URL

    def to_dict(self) -> dict[str, str]:
        return {"node_id": self.node_id, "input_name": self.input_name, "source": self.source}

    @property
    def filename(self) -> str:
        """The file name the prompt carries until the worker has uploaded it."""
        return self.source.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0] or "input"


def is_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


def names_a_file(value: Any, spec: InputSpec | None) -> bool:
    """True when a value for an upload input means a local file or URL, not a server-side name.

    A name the server already lists (``example.png``) stays a plain value unless a local file of
    that name exists too; anything path-like or with an image extension is a file.
    """
    if not isinstance(value, str) or not value:
        return False
    if is_url(value):
        return True
    path = Path(value).expanduser()
    if path.exists():
        return True
    if spec is not None and spec.options is not None and value in spec.options:
        return False
    return (
        "/" in value
        or "\\" in value
        or value.startswith(("~", "."))
        or (value.lower().endswith(IMAGE_EXTENSIONS))
    )


def check_input_file(source: str, *, image: bool = True) -> str:
    """The checked source (an absolute path, or the URL); raises InputFileError."""
    if is_url(source):
        return source
    path = Path(source).expanduser()
    if not path.exists():
        raise InputFileError(
            path=source,
            reason="does not exist",
            fix="check the path (relative paths are from the current directory)",
        )
    if not path.is_file():
        raise InputFileError(path=source, reason="is not a regular file")
    size = path.stat().st_size
    if size > MAX_INPUT_BYTES:
        limit = MAX_INPUT_BYTES // (1024 * 1024)
        raise InputFileError(
            path=source, reason=f"is {size} bytes, more than the {limit} MiB upload limit"
        )
    try:
        with path.open("rb") as handle:
            head = handle.read(16)
    except OSError as exc:
        raise InputFileError(path=source, reason=f"cannot be read ({exc.strerror})") from exc
    if image and image_format(head) is None:
        raise InputFileError(
            path=source,
            reason="does not look like an image (not PNG, JPEG, GIF, WebP, BMP or TIFF)",
        )
    return str(path.resolve())


def image_format(head: bytes) -> str | None:
    """The image format named by the first bytes of a file, or None."""
    for magic, offset, name in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            if name == "WebP" and not head.startswith(b"RIFF"):
                continue
            return name
    return None
