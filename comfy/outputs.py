"""Outputs of a finished prompt, read from every key of every node in a history entry.

Core ComfyUI uses ``images`` (SaveImage; PreviewImage with ``type: "temp"``; animated WEBP/PNG and
video with ``animated: [true]`` beside them), ``audio``, ``text`` (strings) and ``result`` (3D
preview strings); custom nodes add their own keys (VideoHelperSuite ``gifs`` with ``format``,
``frame_rate``, ``fullpath``). A list item that carries a ``filename`` is a file fetched via
``/view``; anything else is a value. ``animated`` is not an output: it is a flag of the files
beside it (SaveAnimatedWEBP/PNG, SaveVideo, SaveWEBM), kept as ``OutputFile.animated``.

File names and subfolders come from ComfyUI and are untrusted: ``safe_relative_path`` refuses
anything that could escape the folder it is joined to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from comfyfarm.comfy.errors import UnsafeOutputPath

_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class OutputFile:
    """A file a node produced. ``type`` is ``output``, ``temp`` (previews) or ``input``.

    ``extra`` keeps every other key of the item (``format``, ``frame_rate``, ``fullpath``...).
    ``animated`` is the node's ``animated: [true]`` flag (an animated WEBP/PNG, a video).
    """

    node_id: str
    kind: str
    index: int
    filename: str
    subfolder: str
    type: str
    extra: dict[str, Any] = field(default_factory=dict)
    animated: bool = False

    @property
    def relative_path(self) -> PurePosixPath:
        """``subfolder/filename``, validated (raises ``UnsafeOutputPath``)."""
        return safe_relative_path(self.subfolder, self.filename)


@dataclass(frozen=True)
class OutputValue:
    """A non-file output item: a ``text`` string, a ``result`` entry..."""

    node_id: str
    kind: str
    index: int
    value: Any


def _check_part(part: str, *, filename: str, subfolder: str) -> None:
    def refuse(reason: str) -> UnsafeOutputPath:
        return UnsafeOutputPath(filename=filename, subfolder=subfolder, reason=reason)

    if part in (".", ".."):
        raise refuse(f"path component {part!r}")
    if _DRIVE.match(part):
        raise refuse("drive letter")
    if any(ord(char) < 32 or char == "\x7f" for char in part):
        raise refuse("control character")


def safe_relative_path(subfolder: str, filename: str) -> PurePosixPath:
    """Join an untrusted subfolder and file name into a relative path that stays inside its folder.

    Refused with ``UnsafeOutputPath``: an empty file name, NUL or other control characters,
    backslashes, absolute paths, ``.``/``..`` components, Windows drive letters.
    """
    if not isinstance(filename, str) or not isinstance(subfolder, str):
        raise UnsafeOutputPath(
            filename=str(filename), subfolder=str(subfolder), reason="not a string"
        )

    def refuse(reason: str) -> UnsafeOutputPath:
        return UnsafeOutputPath(filename=filename, subfolder=subfolder, reason=reason)

    if not filename.strip():
        raise refuse("empty file name")
    for text in (subfolder, filename):
        if "\x00" in text:
            raise refuse("NUL byte")
        if "\\" in text:
            raise refuse("backslash")
        if text.startswith("/"):
            raise refuse("absolute path")
    parts = [part for part in subfolder.split("/") if part]
    name_parts = filename.split("/")
    if any(not part for part in name_parts):
        raise refuse("empty path component in file name")
    for part in (*parts, *name_parts):
        _check_part(part, filename=filename, subfolder=subfolder)
    return PurePosixPath(*parts, *name_parts)


ANIMATED_KEY = "animated"


def _item(
    node_id: str, kind: str, index: int, item: Any, animated: bool
) -> OutputFile | OutputValue:
    if isinstance(item, dict) and "filename" in item:
        filename = item["filename"]
        subfolder = item.get("subfolder") or ""
        file_type = item.get("type") or "output"
        if not isinstance(filename, str) or not isinstance(subfolder, str):
            raise UnsafeOutputPath(
                filename=str(filename), subfolder=str(subfolder), reason="not a string"
            )
        safe_relative_path(subfolder, filename)
        extra = {k: v for k, v in item.items() if k not in ("filename", "subfolder", "type")}
        return OutputFile(
            node_id=node_id,
            kind=kind,
            index=index,
            filename=filename,
            subfolder=subfolder,
            type=str(file_type),
            extra=extra,
            animated=animated,
        )
    return OutputValue(node_id=node_id, kind=kind, index=index, value=item)


def collect_outputs(outputs: dict[str, Any]) -> list[OutputFile | OutputValue]:
    """Every output item of every node, in history order (node, key, index).

    The ``animated`` key is no item: it marks the node's files ``animated``.
    Raises ``UnsafeOutputPath`` if any file name or subfolder could escape its folder.
    """
    collected: list[OutputFile | OutputValue] = []
    for node_id, node_output in outputs.items():
        if not isinstance(node_output, dict):
            collected.append(OutputValue(node_id=str(node_id), kind="", index=0, value=node_output))
            continue
        animated = _is_animated(node_output.get(ANIMATED_KEY))
        for kind, items in node_output.items():
            if kind == ANIMATED_KEY:
                continue
            values = items if isinstance(items, list | tuple) else [items]
            collected.extend(
                _item(str(node_id), str(kind), index, item, animated)
                for index, item in enumerate(values)
            )
    return collected


def _is_animated(flag: Any) -> bool:
    """``[true]`` (ComfyUI's tuple, one flag per saved file list) or a bare ``true``."""
    if isinstance(flag, list | tuple):
        return any(value is True for value in flag)
    return flag is True


def output_files(outputs: dict[str, Any]) -> list[OutputFile]:
    """Only the files of ``collect_outputs``."""
    return [item for item in collect_outputs(outputs) if isinstance(item, OutputFile)]
