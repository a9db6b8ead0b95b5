"""ComfyUI's console log (``GET /internal/logs/raw``) and the part of it one prompt printed.

ComfyUI keeps the last 300 chunks it wrote to stdout/stderr as ``{"t": <ISO time>, "m": <text>}``
and serves them at ``/internal/logs/raw``. It runs one prompt at a time, in queue order, and ends
each with the line ``Prompt executed in N seconds`` (whether the prompt succeeded or failed). A
worker may have other prompts running or waiting in ComfyUI's queue (its own pipelined ones,
posted at the same moment), so "what was printed while my prompt was in ComfyUI" is not enough;
the prompt's own lines are cut out like this::

    before POST /prompt   the ring (its last entry anchors everything after)
    after POST /prompt    the queue, the ring, the queue again (the same, else read again):
                          ahead = end lines since the anchor + prompts before ours in the queue
    on execution_start    the ring (only when ``ahead`` could not be told)
    after the prompt      the ring

    entries after the anchor ... [the ``ahead`` prompts' lines, each closed by its end line]
                                 our lines ... our end line | later prompts' lines

Without ``ahead`` the start snapshot stands in: the previous prompt's end line was printed before
ours started, so it is the last end line already there (unless no end line came after it: then
the prompt had ended before it was taken, and the last one seen is its own). When the ring has
wrapped past the anchor, everything in the last ring is used and the slice is marked incomplete.
"got prompt" lines of prompts posted while ours ran stay in its slice, as on ComfyUI's console.

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


def prompts_ahead(client: ComfyClient, submitted: list[LogEntry], prompt_id: str) -> int | None:
    """How many prompts ComfyUI ran or runs before ``prompt_id`` since the ring ``submitted``:
    those that ended since (end lines) plus those before it in the queue now. Read right after
    POST /prompt; None when it cannot be told (the prompt already left the queue, the queue
    kept changing, the ring wrapped)."""
    for _ in range(3):
        try:
            queued = _queued(client)
            ring = read_console_log(client)
            if ring is None:
                return None
            if _queued(client) != queued:
                continue  # a prompt ended while the ring was read: read both again
        except ComfyError:
            return None
        window = entries_after(submitted, ring)
        if prompt_id not in queued or not window.complete:
            return None
        return sum(1 for entry in window.entries if _is_end(entry)) + queued.index(prompt_id)
    return None


def _queued(client: ComfyClient) -> list[str]:
    """Prompt ids in execution order: the running one, then the pending ones."""
    queue = client.get_queue()
    return [*queue.running, *queue.pending]


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
    submitted: list[LogEntry],
    started: list[LogEntry] | None,
    ended: list[LogEntry],
    *,
    ahead: int | None = None,
) -> LogSlice:
    """One prompt's own lines, from the snapshots (see the module docstring)."""
    window = entries_after(submitted, ended)
    lines = window.entries
    ends = [index for index, entry in enumerate(lines) if _is_end(entry)]
    first = 0
    if ahead is not None and window.complete and len(ends) > ahead:
        first = ends[ahead - 1] + 1 if ahead else 0
    elif started is not None and window.complete:
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
