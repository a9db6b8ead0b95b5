"""Answers of ``POST /prompt``: accepted (``QueuedPrompt``) or rejected (``PromptRejected``).

* 200 ``{"prompt_id", "number", "node_errors": {}}``: accepted.
* 200 with non-empty ``node_errors``: a *partial* accept. ComfyUI dropped the output nodes that
  failed validation and queued the rest; by default we treat it as a rejection.
* 400 ``{"error": {type, message, details, extra_info}, "node_errors": {...}}``: rejected.
  ``node_errors`` is ``{node_id: {"errors": [{type, message, details, extra_info}],
  "dependent_outputs": [...], "class_type": ...}}``; ``extra_info.input_name`` names the input.
* 500 text/plain: the server choked on the body (``ComfyServerError``, raised by the transport).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from comfyfarm.comfy.errors import NodeError, PromptRejected

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def is_canonical_uuid(value: str) -> bool:
    """Lowercase, hyphenated UUID: the only prompt id form newer ComfyUI versions accept."""
    return bool(_UUID.match(value))


@dataclass(frozen=True)
class QueuedPrompt:
    """A prompt ComfyUI accepted; ``node_errors`` is set only for an allowed partial accept."""

    prompt_id: str
    number: float
    node_errors: list[NodeError] = field(default_factory=list)


def parse_node_errors(node_errors: Any) -> list[NodeError]:
    """Flatten ``node_errors`` into one ``NodeError`` per reported problem (tolerant of shapes)."""
    if not isinstance(node_errors, dict):
        return []
    flat: list[NodeError] = []
    for node_id, entry in node_errors.items():
        if not isinstance(entry, dict):
            continue
        class_type = str(entry.get("class_type") or "")
        errors = entry.get("errors")
        for error in errors if isinstance(errors, list) else []:
            if not isinstance(error, dict):
                continue
            extra = error.get("extra_info")
            extra = extra if isinstance(extra, dict) else {}
            input_name = extra.get("input_name")
            flat.append(
                NodeError(
                    node_id=str(node_id),
                    class_type=class_type,
                    error_type=str(error.get("type") or ""),
                    message=str(error.get("message") or ""),
                    details=str(error.get("details") or ""),
                    input_name=None if input_name is None else str(input_name),
                    received_value=extra.get("received_value"),
                    extra_info=extra,
                )
            )
    return flat


def rejection(body: Any, *, partial: bool = False) -> PromptRejected:
    """The ``PromptRejected`` for a 400 body, or for a 200 body with ``node_errors`` (partial)."""
    body = body if isinstance(body, dict) else {}
    node_errors = parse_node_errors(body.get("node_errors"))
    error = body.get("error")
    if partial or not isinstance(error, dict):
        error = {
            "type": "prompt_outputs_failed_validation" if node_errors else "invalid_prompt",
            "message": "Some prompt outputs failed validation" if partial else "Prompt rejected",
            "details": "" if isinstance(error, dict) or error is None else str(error),
        }
    return PromptRejected(
        error_type=str(error.get("type") or ""),
        message=str(error.get("message") or ""),
        details=str(error.get("details") or ""),
        node_errors=node_errors,
        partial=partial,
    )


def accepted(body: Any) -> QueuedPrompt:
    """The ``QueuedPrompt`` of a 200 body (``node_errors`` parsed, not judged)."""
    if not isinstance(body, dict) or body.get("prompt_id") is None:
        raise ValueError("answer has no prompt_id")
    number = body.get("number")
    return QueuedPrompt(
        prompt_id=str(body["prompt_id"]),
        number=number if isinstance(number, int | float) and not isinstance(number, bool) else 0,
        node_errors=parse_node_errors(body.get("node_errors")),
    )
