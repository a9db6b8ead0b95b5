"""History entries (``GET /history/{id}``): the source of truth once a prompt has finished.

An entry is ``{prompt, outputs, status: {status_str, completed, messages}, meta}``. History lives
in ComfyUI's memory only: it is gone after a restart, and ``{}`` means queued, running or unknown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from comfyfarm.comfy.errors import ExecutionFailed, ExecutionInterrupted


@dataclass(frozen=True)
class HistoryEntry:
    """One prompt's history: outputs per node, final status, the event messages ComfyUI kept."""

    prompt_id: str
    status_str: str
    completed: bool
    outputs: dict[str, Any]
    messages: list[list[Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, prompt_id: str, entry: dict[str, Any]) -> HistoryEntry:
        """Build from the value under ``prompt_id`` in a /history answer (tolerates gaps)."""
        status = entry.get("status")
        status = status if isinstance(status, dict) else {}
        outputs = entry.get("outputs")
        meta = entry.get("meta")
        messages = status.get("messages")
        return cls(
            prompt_id=prompt_id,
            status_str=str(status.get("status_str") or ""),
            completed=bool(status.get("completed", False)),
            outputs=outputs if isinstance(outputs, dict) else {},
            messages=[m for m in messages if isinstance(m, list) and len(m) == 2]
            if isinstance(messages, list)
            else [],
            meta=meta if isinstance(meta, dict) else {},
            raw=entry,
        )

    @property
    def succeeded(self) -> bool:
        return self.status_str == "success"

    @property
    def extra_data(self) -> dict[str, Any]:
        """``extra_data`` as submitted (with ``client_id`` merged in by ComfyUI)."""
        prompt = self.raw.get("prompt")
        if isinstance(prompt, list) and len(prompt) > 3 and isinstance(prompt[3], dict):
            return prompt[3]
        return {}

    def message(self, kind: str) -> dict[str, Any] | None:
        """Data of the last message of that type (``execution_error``, ``execution_cached``...)."""
        for name, data in reversed(self.messages):
            if name == kind and isinstance(data, dict):
                return data
        return None

    def execution_span(self) -> tuple[float, float] | None:
        """(start, end) of the prompt's execution in seconds of ComfyUI's clock, from the
        ``timestamp`` (ms) of its ``execution_start`` and of its final message (success, error or
        interrupted); None when either is missing (older ComfyUI, history rebuilt from events)."""
        start = _timestamp(self.message("execution_start"))
        end = None
        for kind in ("execution_success", "execution_error", "execution_interrupted"):
            end = end if end is not None else _timestamp(self.message(kind))
        if start is None or end is None:
            return None
        return start, max(start, end)

    @property
    def cached_nodes(self) -> list[str]:
        data = self.message("execution_cached") or {}
        nodes = data.get("nodes")
        return [str(node) for node in nodes] if isinstance(nodes, list) else []

    def failure(self) -> ExecutionFailed | ExecutionInterrupted | None:
        """The error this entry records, or None when the prompt succeeded."""
        interrupted = self.message("execution_interrupted")
        if interrupted is not None:
            return ExecutionInterrupted(
                prompt_id=self.prompt_id,
                node_id=_opt_str(interrupted.get("node_id")),
                node_type=_opt_str(interrupted.get("node_type")),
            )
        error = self.message("execution_error")
        if error is not None:
            traceback = error.get("traceback")
            return ExecutionFailed(
                prompt_id=self.prompt_id,
                node_id=_opt_str(error.get("node_id")),
                node_type=_opt_str(error.get("node_type")),
                exception_type=str(error.get("exception_type") or ""),
                exception_message=str(error.get("exception_message") or ""),
                traceback=[str(line) for line in traceback] if isinstance(traceback, list) else [],
            )
        if self.status_str == "error":
            return ExecutionFailed(
                prompt_id=self.prompt_id,
                node_id=None,
                node_type=None,
                exception_type="unknown",
                exception_message="ComfyUI recorded status 'error' without an error message",
                traceback=[],
            )
        return None


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _timestamp(data: dict[str, Any] | None) -> float | None:
    value = (data or {}).get("timestamp")
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return float(value) / 1000.0
