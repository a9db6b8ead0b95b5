"""ComfyUI's console log (``GET /internal/logs/raw``) and the part of it one prompt printed.

ComfyUI keeps the last 300 chunks it wrote to stdout/stderr as ``{"t": <ISO time>, "m": <text>}``
and serves them at ``/internal/logs/raw``. It runs one prompt at a time and ends each with the
line ``Prompt executed in N seconds`` (printed whether the prompt succeeded or failed). A worker
may have a second prompt waiting in ComfyUI's queue, so "what changed while my prompt was in
ComfyUI" is not enough; three snapshots cut the prompt's own lines out::

    submitted   snapshot 0 (before POST /prompt)
    started     snapshot 1 (on the prompt's execution_start event; optional)
    ended       snapshot 2 (after the prompt ended)

    entries after snapshot 0 ... [the previous prompt's lines, its "Prompt executed" line]
                                 our lines ... our "Prompt executed" line | the next prompt's lines

The previous prompt's end line, if any, was printed before ours started, so it is the last end
line already present at snapshot 1; our lines run from after it to our own end line. A prompt
that ended before snapshot 1 was taken (cached, or shorter than the event's trip to the worker)
shows as no end line after snapshot 1: then the last end line seen is its own. An entry is
known by its position after the last entry of snapshot 0. When the ring has wrapped past that
entry, everything in snapshot 2 is used and the slice is marked incomplete.

ComfyUI versions without the route (404) or a malformed answer give ``None``: no log, no error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from comfyfarm.comfy.errors import ComfyError

if TYPE_CHECKING:
    from comfyfarm.comfy.client import ComfyClient

LOG_ROUTE = "/internal/logs/raw"
COMFY_RING_SIZE = 300
MAX_ENTRIES = 10_000
MAX_ENTRY_CHARS = 64 * 1024


@dataclass(frozen=True)
class LogEntry:
    t: str
    m: str


@dataclass(frozen=True)
class LogSlice:
    """What a prompt printed; ``complete`` False when older lines had left ComfyUI's ring."""

    entries: list[LogEntry]
    complete: bool

    def text(self) -> str:
        return "".join(entry.m for entry in self.entries)


def read_console_log(client: ComfyClient) -> list[LogEntry] | None:
    """ComfyUI's log ring now; None when it does not serve one (or answers nonsense)."""
    try:
        body = client.console_log()
    except ComfyError:
        return None
    return parse_entries(body)


def parse_entries(body: Any) -> list[LogEntry] | None:
    entries = body.get("entries") if isinstance(body, dict) else None
    if not isinstance(entries, list):
        return None
    found = []
    for entry in entries[-MAX_ENTRIES:]:
        if isinstance(entry, dict) and isinstance(entry.get("m"), str):
            found.append(LogEntry(str(entry.get("t", "")), entry["m"][:MAX_ENTRY_CHARS]))
    return found


END_LINE = "Prompt executed in "


def entries_after(before: list[LogEntry], after: list[LogEntry]) -> LogSlice:
    """The entries of ``after`` that were not yet in ``before``."""
    if not before:
        return LogSlice(list(after), complete=len(after) < COMFY_RING_SIZE)
    last = before[-1]
    for index in range(len(after) - 1, -1, -1):
        if after[index] == last:
            return LogSlice(after[index + 1 :], complete=True)
    return LogSlice(list(after), complete=False)


def prompt_slice(
    submitted: list[LogEntry], started: list[LogEntry] | None, ended: list[LogEntry]
) -> LogSlice:
    """One prompt's own lines, from the three snapshots (see the module docstring)."""
    window = entries_after(submitted, ended)
    lines = window.entries
    ends = [index for index, entry in enumerate(lines) if _is_end(entry)]
    first = 0
    if started is not None and window.complete:
        seen = len(entries_after(submitted, started).entries)
        ends_seen = [index for index in ends if index < seen]
        if ends_seen and ends_seen[-1] == ends[-1]:
            # No end line came after the start snapshot: the prompt had ended before it (a
            # cached or very short prompt), so the last end line seen is its own.
            ends_seen.pop()
        if ends_seen:
            first = ends_seen[-1] + 1
    own_end = next((index for index in ends if index >= first), len(lines) - 1)
    return LogSlice(lines[first : own_end + 1], window.complete)


def _is_end(entry: LogEntry) -> bool:
    return entry.m.lstrip().startswith(END_LINE)
