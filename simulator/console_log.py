"""ComfyUI's console log as ``/internal/logs`` serves it: a ring of the last lines it printed.

ComfyUI (``app/logger.py``) keeps every chunk written to stdout/stderr in a deque of 300 entries
``{"t": <local ISO time>, "m": <text>}``; ``GET /internal/logs`` answers them joined into one
string, ``GET /internal/logs/raw`` as ``{"entries": [...], "size": {"cols", "rows"}}``. The
simulator writes the lines ComfyUI prints around a prompt (``got prompt``, the exception banner
of a failed node, ``Prompt executed in …``) plus one of its own naming the prompt it runs
(``[sim] running prompt <id>``), so tests can tell whose lines a slice holds.
"""

from __future__ import annotations

import logging
from collections import deque
from datetime import datetime
from typing import Any

log = logging.getLogger(__name__)

MAX_ENTRIES = 300  # ComfyUI's own ring size


class ConsoleLog:
    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._entries: deque[dict[str, str]] = deque(maxlen=max_entries)

    def write(self, line: str) -> None:
        """One printed line (the newline is added, as print() would)."""
        self._entries.append({"t": datetime.now().isoformat(), "m": line + "\n"})
        log.info("%s", line)

    def raw(self) -> dict[str, Any]:
        return {"entries": list(self._entries), "size": {"cols": 80, "rows": 24}}

    def text(self) -> str:
        return "".join(entry["m"] for entry in self._entries)
