"""Each job's slice of its ComfyUI's console log, stored beside the outputs as ``log.txt``.

Why: a failed node's traceback, a model that loaded slowly, a custom node's warnings — ComfyUI
prints them to its console, which the farm's users cannot see. The worker reads ComfyUI's log
ring (``comfy.console_log``) just before it submits the prompt, ring and queue just after, and
the ring again when the prompt has ended (succeeded, failed, cancelled), cuts the prompt's own
lines out of them and stores them as ``<prefix>/<job_id>/log.txt``; the result names it
(``JobResult.log``).

Best effort, never a job failure: no log (``None``) when ComfyUI does not serve one, when the
job followed a prompt submitted by an earlier delivery (its start was not seen), or when the
store refuses the file. At most ``MAX_LOG_BYTES`` are kept (the end: errors come last).
"""

from __future__ import annotations

import logging

from comfyfarm.comfy.client import ComfyClient
from comfyfarm.comfy.console_log import (
    LogEntry,
    prompt_slice,
    prompts_ahead,
    read_console_log,
)
from comfyfarm.storage import OutputStore, StorageError
from comfyfarm.storage.keys import job_log_key

log = logging.getLogger(__name__)

MAX_LOG_BYTES = 1 << 20
LOST_LINES = "[comfyfarm: earlier lines of this job had already left ComfyUI's log buffer]\n"
CUT_LINES = "[comfyfarm: the log was cut to its last {size} bytes]\n"


class JobLog:
    """The snapshot taken before a prompt, and saving the slice after it."""

    def __init__(self, client: ComfyClient, before: list[LogEntry]) -> None:
        self._client = client
        self._before = before
        self._ahead: int | None = None
        self._started: list[LogEntry] | None = None

    def submitted(self, prompt_id: str) -> None:
        """Called right after POST /prompt: count the prompts ComfyUI runs before this one."""
        self._ahead = prompts_ahead(self._client, self._before, prompt_id)

    def mark_started(self) -> None:
        """Called on the prompt's ``execution_start`` (the previous prompt has ended by then)."""
        if self._started is None and self._ahead is None:
            self._started = read_console_log(self._client)

    @classmethod
    def begin(cls, client: ComfyClient) -> JobLog | None:
        before = read_console_log(client)
        return None if before is None else cls(client, before)

    def save(self, store: OutputStore, storage_prefix: str, job_id: str) -> str | None:
        """Store what ComfyUI printed since ``begin``; the stored URI, or None."""
        after = read_console_log(self._client)
        if after is None:
            return None
        piece = prompt_slice(self._before, self._started, after, ahead=self._ahead)
        data = ("" if piece.complete else LOST_LINES).encode() + piece.text().encode(
            "utf-8", errors="replace"
        )
        if len(data) > MAX_LOG_BYTES:
            data = CUT_LINES.format(size=MAX_LOG_BYTES).encode() + data[-MAX_LOG_BYTES:]
        try:
            stored = store.write_bytes(
                job_log_key(storage_prefix, job_id), data, content_type="text/plain; charset=utf-8"
            )
        except StorageError as exc:
            log.warning("could not store the ComfyUI log of job %s: %s", job_id, exc)
            return None
        return stored.uri
