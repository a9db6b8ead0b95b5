"""Terminal progress bars for jobs (``comfyfarm run`` and ``comfyfarm submit --wait``).

One line per job, redrawn in place on a terminal; on a pipe or file, one line per phase change
(so logs stay readable). Writes to stderr: stdout is for results (``--json``).
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

BAR_WIDTH = 24


class ProgressBars:
    """Draws one bar per job id, in the order jobs were first seen."""

    def __init__(self, stream: TextIO | None = None, *, enabled: bool = True) -> None:
        self._stream = stream or sys.stderr
        self._enabled = enabled
        self._tty = self._stream.isatty()
        self._lines: dict[str, str] = {}
        self._last_phase: dict[str, str] = {}
        self._drawn = 0

    def update(self, job_id: str, progress: dict[str, Any]) -> None:
        """Show ``progress`` (a JobProgress dict, or ``{"phase": ..., "percent": ...}``)."""
        if not self._enabled:
            return
        line = render_line(job_id, progress)
        self._lines[job_id] = line
        if self._tty:
            self._redraw()
        elif self._last_phase.get(job_id) != progress.get("phase"):
            self._last_phase[job_id] = str(progress.get("phase"))
            print(line, file=self._stream, flush=True)

    def finish(self, job_id: str, status: str) -> None:
        self.update(job_id, {"phase": status, "percent": 100.0 if status == "succeeded" else None})

    def _redraw(self) -> None:
        if self._drawn:
            self._stream.write(f"\x1b[{self._drawn}F")
        for line in self._lines.values():
            self._stream.write("\x1b[2K" + line + "\n")
        self._drawn = len(self._lines)
        self._stream.flush()


def render_line(job_id: str, progress: dict[str, Any]) -> str:
    """``abcd1234 [########------]  42.0% running KSampler 12/20``."""
    percent = progress.get("percent")
    if isinstance(percent, int | float):
        filled = int(BAR_WIDTH * max(0.0, min(100.0, float(percent))) / 100)
        bar = f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {float(percent):5.1f}%"
    else:
        bar = f"[{' ' * BAR_WIDTH}]     "
    detail = str(progress.get("phase") or "")
    if progress.get("node_type"):
        detail += f" {progress['node_type']}"
        if progress.get("max"):
            detail += f" {int(progress.get('value') or 0)}/{int(progress['max'])}"
    worker = f" @{progress['worker']}" if progress.get("worker") else ""
    return f"{job_id[:8]} {bar} {detail}{worker}"
