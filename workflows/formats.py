"""Workflow files: read, tell API format from UI format, and turn either into an API prompt.

- API format (what ``POST /prompt`` takes): ``{"6": {"class_type": ..., "inputs": {...},
  "_meta": {...}}, ...}``. A ``{"prompt": {...}}`` wrapper (a saved request body) is unwrapped.
- UI format (what the editor saves): an object with a ``nodes`` list and ``links``.
- PNG images written by ComfyUI carry both in text chunks; ``prompt`` (API) is preferred.

Anything else is a WorkflowFormatError that says which of the two it resembles least and why;
a file that is not JSON gets the line and column of the JSON error.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from comfyfarm.workflows.errors import WorkflowError, WorkflowFormatError
from comfyfarm.workflows.jsonsafe import JsonValueError, json_problem, strict_loads
from comfyfarm.workflows.problems import general
from comfyfarm.workflows.schema import SchemaSource
from comfyfarm.workflows.uigraph import is_ui_link_list

Format = Literal["api", "ui"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Workflow:
    """A loaded workflow: its name (file stem or library name), format and JSON data."""

    name: str
    format: Format
    data: dict[str, Any]
    path: Path | None = None

    def to_api(self, schema: SchemaSource | None) -> dict[str, Any]:
        """The API-format prompt (a fresh copy); UI format needs node schemas to convert."""
        if self.format == "api":
            return json.loads(json.dumps(self.data))  # type: ignore[no-any-return]
        if schema is None:
            raise WorkflowError(
                problems=[
                    general(
                        "format",
                        f"{self.name} is a UI-format workflow; converting it needs node schemas",
                        "pass --comfy-url URL (a running ComfyUI) or --object-info FILE",
                    )
                ]
            )
        from comfyfarm.workflows.convert import convert_ui_to_api

        return convert_ui_to_api(self.data, schema)

    @property
    def sidecar_path(self) -> Path | None:
        """``<name>.params.toml`` beside the file (``x.api.json`` and ``x.json`` share one)."""
        if self.path is None:
            return None
        return sidecar_for(self.path)


def sidecar_for(path: Path) -> Path:
    stem = path.name
    for suffix in (".json", ".png"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    if stem.endswith(".api"):
        stem = stem[: -len(".api")]
    return path.with_name(f"{stem}.params.toml")


def detect_format(data: Any, *, source: str = "<workflow>") -> Format:
    """``"api"`` or ``"ui"``; raises WorkflowFormatError saying why it is neither."""
    if not isinstance(data, dict):
        kind = type(data).__name__ if not isinstance(data, list) else "a JSON array"
        raise WorkflowFormatError(
            source=source, reason=f"expected a JSON object (a workflow), got {kind}"
        )
    if "nodes" in data:
        if isinstance(data["nodes"], list) and is_ui_link_list(data.get("links", [])):
            return "ui"
        raise WorkflowFormatError(
            source=source,
            reason="looks like a UI-format workflow but 'nodes' is not a list "
            "or 'links' is not a list",
        )
    if not data:
        raise WorkflowFormatError(source=source, reason="empty JSON object: no nodes at all")
    not_nodes = [key for key, value in data.items() if not _is_api_node(value)]
    if not not_nodes:
        return "api"
    sample = ", ".join(repr(key) for key in not_nodes[:3])
    raise WorkflowFormatError(
        source=source,
        reason="neither API format (an object of node id -> {class_type, inputs}) nor UI format "
        f"(an object with 'nodes' and 'links'); entries that are not nodes: {sample}",
    )


def parse_workflow(data: Any, *, name: str, path: Path | None = None) -> Workflow:
    """A Workflow from already-parsed JSON (unwraps ``{"prompt": {...}}``)."""
    source = str(path) if path else name
    if isinstance(data, dict) and set(data) <= {"prompt", "client_id", "extra_data", "prompt_id"}:
        if isinstance(data.get("prompt"), dict):
            data = data["prompt"]
    return Workflow(name=name, format=detect_format(data, source=source), data=data, path=path)


def load_workflow(source: Path | str | Mapping[str, Any]) -> Workflow:
    """Load a workflow from a path, a library name (``sd15_text2image``) or a dict."""
    if isinstance(source, Mapping):
        found = json_problem(dict(source))
        if found is not None:
            where, reason = found
            raise WorkflowFormatError(source="workflow", reason=f"{where}: {reason}")
        return parse_workflow(dict(source), name="workflow")
    from comfyfarm.workflows.library import find_workflow

    path = find_workflow(source)
    name = _workflow_name(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise WorkflowFormatError(source=str(path), reason=exc.strerror or str(exc)) from exc
    if raw.startswith(PNG_SIGNATURE):
        return parse_workflow(_png_workflow(raw, str(path)), name=name, path=path)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise WorkflowFormatError(source=str(path), reason="not UTF-8 text (binary file?)") from exc
    return parse_workflow(parse_json(text, source=str(path)), name=name, path=path)


def parse_json(text: str, *, source: str) -> Any:
    """Strict JSON (``jsonsafe.strict_loads``) whose error names the file, line and column, or
    the path of the value we refuse."""
    try:
        return strict_loads(text)
    except json.JSONDecodeError as exc:
        raise WorkflowFormatError(
            source=source, reason=f"not JSON: {exc.msg}", line=exc.lineno, column=exc.colno
        ) from exc
    except JsonValueError as exc:
        raise WorkflowFormatError(source=source, reason=f"JSON we do not accept: {exc}") from None


def _workflow_name(path: Path) -> str:
    name = path.name
    for suffix in (".json", ".png", ".api"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name


def _is_api_node(value: Any) -> bool:
    return isinstance(value, dict) and ("class_type" in value or "inputs" in value)


def _png_workflow(raw: bytes, source: str) -> Any:
    """The ``prompt`` (else ``workflow``) JSON that ComfyUI writes into PNG text chunks."""
    chunks: dict[str, str] = {}
    position = len(PNG_SIGNATURE)
    while position + 8 <= len(raw):
        length = int.from_bytes(raw[position : position + 4], "big")
        kind = raw[position + 4 : position + 8]
        body = raw[position + 8 : position + 8 + length]
        position += 12 + length
        if kind == b"tEXt" and b"\x00" in body:
            keyword, _, value = body.partition(b"\x00")
            chunks[keyword.decode("latin-1")] = value.decode("utf-8", "replace")
        elif kind == b"iTXt" and b"\x00" in body:
            keyword, _, rest = body.partition(b"\x00")
            compressed, rest = rest[0], rest[2:]
            _, _, rest = rest.partition(b"\x00")  # language tag
            _, _, text = rest.partition(b"\x00")  # translated keyword
            data = zlib.decompress(text) if compressed else text
            chunks[keyword.decode("latin-1")] = data.decode("utf-8", "replace")
        elif kind == b"IEND":
            break
    for key in ("prompt", "workflow"):
        if key in chunks:
            return parse_json(chunks[key], source=f"{source} ({key} chunk)")
    raise WorkflowFormatError(
        source=source,
        reason="a PNG without an embedded ComfyUI workflow (no prompt/workflow chunk)",
    )
