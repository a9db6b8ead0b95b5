"""Terminal progress bars for jobs (``comfyfarm run`` and ``comfyfarm submit --wait``).

One line per job, redrawn in place on a terminal; on a pipe or file, one line per phase change
(so logs stay readable). More jobs than fit (``MAX_LINES``) turn the terminal view into a summary
line (done, failed, running, queued) above the bars of the jobs running now, so a sweep of
thousands stays one screen. Writes to stderr: stdout is for results (``--json``).
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable
from typing import Any, TextIO

BAR_WIDTH = 24
MAX_LINES = 20  # lines a terminal view may take; more jobs than this get the summary view
FINAL_PHASES = frozenset({"succeeded", "failed", "cancelled", "timeout"})


class ProgressBars:
    """Draws one bar per job id, in the order jobs were first seen."""

    def __init__(self, stream: TextIO | None = None, *, enabled: bool = True) -> None:
        self._stream = stream or sys.stderr
        self._enabled = enabled
        self._tty = self._stream.isatty()
        self._lines: dict[str, str] = {}
        self._phase: dict[str, str] = {}
        self._last_phase: dict[str, str] = {}
        self._drawn = 0

    def update(self, job_id: str, progress: dict[str, Any]) -> None:
        """Show ``progress`` (a JobProgress dict, or ``{"phase": ..., "percent": ...}``)."""
        if not self._enabled:
            return
        line = render_line(job_id, progress)
        self._lines[job_id] = line
        self._phase[job_id] = str(progress.get("phase") or "")
        if self._tty:
            self._redraw()
        elif self._last_phase.get(job_id) != progress.get("phase"):
            self._last_phase[job_id] = str(progress.get("phase"))
            print(line, file=self._stream, flush=True)

    def finish(self, job_id: str, status: str) -> None:
        self.update(job_id, {"phase": status, "percent": 100.0 if status == "succeeded" else None})

    def view(self) -> list[str]:
        """The lines a terminal shows now: every bar, or the summary view for many jobs."""
        if len(self._lines) <= MAX_LINES:
            return list(self._lines.values())
        active = [
            line
            for job_id, line in self._lines.items()
            if self._phase[job_id] not in FINAL_PHASES and self._phase[job_id] != "queued"
        ]
        shown = [summary_line(self._phase.values()), *active[: MAX_LINES - 1]]
        return shown + [""] * (MAX_LINES - len(shown))  # a fixed block: no stale lines below

    def _redraw(self) -> None:
        if self._drawn:
            self._stream.write(f"\x1b[{self._drawn}F")
        lines = self.view()
        for line in lines:
            self._stream.write("\x1b[2K" + line + "\n")
        self._drawn = len(lines)
        self._stream.flush()


def summary_line(phases: Iterable[str]) -> str:
    """``412/1000 done (410 succeeded, 2 failed) · 8 running · 580 queued``."""
    counts = Counter(phases)
    total = sum(counts.values())
    done = sum(counts[phase] for phase in FINAL_PHASES)
    queued = counts["queued"]
    unsuccessful = ", ".join(
        f"{counts[phase]} {phase}"
        for phase in sorted(FINAL_PHASES - {"succeeded"})
        if counts[phase]
    )
    outcome = f"{counts['succeeded']} succeeded" + (f", {unsuccessful}" if unsuccessful else "")
    return f"{done}/{total} done ({outcome}) · {total - done - queued} running · {queued} queued"


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
