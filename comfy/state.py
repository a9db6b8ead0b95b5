"""Where a prompt is on a ComfyUI: queued, running, finished (history) or unknown.

Used to reconcile after a dropped socket or a stall, and before re-submitting a redelivered job
(ComfyUI does not reject duplicate prompt ids, so we must ask first).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from comfyfarm.comfy.history import HistoryEntry


class PromptState(enum.Enum):
    UNKNOWN = "unknown"
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"


@dataclass(frozen=True)
class QueueSnapshot:
    """Prompt ids in ``GET /queue``: the running one(s), and pending ones in execution order."""

    running: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, body: Any) -> QueueSnapshot:
        """Parse ``{"queue_running": [[number, id, ...]], "queue_pending": [...]}``."""
        body = body if isinstance(body, dict) else {}
        return cls(
            running=[item[1] for item in _items(body.get("queue_running"))],
            pending=[item[1] for item in sorted(_items(body.get("queue_pending")), key=_number)],
        )

    def state_of(self, prompt_id: str) -> PromptState:
        if prompt_id in self.running:
            return PromptState.RUNNING
        if prompt_id in self.pending:
            return PromptState.PENDING
        return PromptState.UNKNOWN


def _items(value: Any) -> list[tuple[float, str]]:
    items: list[tuple[float, str]] = []
    for item in value if isinstance(value, list) else []:
        if isinstance(item, list) and len(item) >= 2:
            number = item[0] if isinstance(item[0], int | float) else 0.0
            items.append((float(number), str(item[1])))
    return items


def _number(item: tuple[float, str]) -> float:
    return item[0]


@dataclass(frozen=True)
class PromptLookup:
    """What ComfyUI knows about a prompt id; ``history`` is set when ``state`` is DONE."""

    state: PromptState
    history: HistoryEntry | None = None


_JOB_STATES = {
    "pending": PromptState.PENDING,
    "in_progress": PromptState.RUNNING,
    "running": PromptState.RUNNING,
    "completed": PromptState.DONE,
    "success": PromptState.DONE,
    "failed": PromptState.DONE,
    "error": PromptState.DONE,
    "cancelled": PromptState.DONE,
    "interrupted": PromptState.DONE,
}


def job_state(body: Any) -> PromptState:
    """State from a ``GET /api/jobs/{id}`` body (``status``: pending, in_progress, completed...)."""
    status = body.get("status") if isinstance(body, dict) else None
    return _JOB_STATES.get(str(status).lower(), PromptState.UNKNOWN)
