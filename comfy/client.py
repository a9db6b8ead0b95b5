"""``ComfyClient``: the HTTP side of one ComfyUI instance (submit, inspect, cancel, upload, fetch).

Every call has a timeout and raises only errors of ``comfyfarm.comfy.errors``. The WebSocket side is
``comfy.ws.EventStream``; waiting for a prompt is ``comfy.tracker.follow_prompt``.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import requests

from comfyfarm.comfy.errors import ComfyError, ComfyUnavailable, UnsafeOutputPath
from comfyfarm.comfy.history import HistoryEntry
from comfyfarm.comfy.http import Transport, request_error
from comfyfarm.comfy.limits import ComfyLimits
from comfyfarm.comfy.outputs import OutputFile, safe_relative_path
from comfyfarm.comfy.prompts import QueuedPrompt, accepted, is_canonical_uuid, rejection
from comfyfarm.comfy.state import PromptLookup, PromptState, QueueSnapshot, job_state
from comfyfarm.comfy.uploads import UploadedFile, content_type

log = logging.getLogger(__name__)


def _quoted(value: str) -> str:
    return quote(value, safe="")


class ComfyClient:
    """HTTP client of one ComfyUI (``base_url`` like ``http://127.0.0.1:8188``)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 30.0,
        session: requests.Session | None = None,
        limits: ComfyLimits | None = None,
    ) -> None:
        self._http = Transport(base_url, timeout=timeout, session=session, limits=limits)

    @property
    def limits(self) -> ComfyLimits:
        """Size caps on what this ComfyUI may send (answers, ``/view`` files, WS messages)."""
        return self._http.limits

    @property
    def base_url(self) -> str:
        """The URL requests go to, credentials included: never show or store it."""
        return self._http.base_url

    @property
    def display_url(self) -> str:
        """``base_url`` with its password masked: for results, Redis, logs and errors."""
        return self._http.shown_url

    @property
    def has_jobs_api(self) -> bool:
        """Whether the server has ``/api/jobs`` (probed once)."""
        return self._http.has_jobs_api

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ComfyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- prompts ------------------------------------------------------------------------------

    def queue_prompt(
        self,
        prompt: dict[str, Any],
        *,
        prompt_id: str,
        client_id: str,
        extra_data: dict[str, Any] | None = None,
        front: bool = False,
        allow_partial: bool = False,
    ) -> QueuedPrompt:
        """Submit an API-format prompt under our own ``prompt_id`` (a canonical lowercase UUID).

        Connect the ``EventStream`` with the same ``client_id`` first: events are not replayed.
        A 200 with ``node_errors`` means ComfyUI queued only the outputs that validated; unless
        ``allow_partial``, that prompt is cancelled again and ``PromptRejected(partial=True)``
        raised. ComfyUI does not refuse a duplicate ``prompt_id``: call ``lookup`` first.
        The returned ``prompt_id`` is the server's (very old servers ignore ours).
        """
        if not is_canonical_uuid(prompt_id):
            raise ValueError(f"prompt_id must be a canonical lowercase UUID, got {prompt_id!r}")
        body = {
            "prompt": prompt,
            "client_id": client_id,
            "prompt_id": prompt_id,
            "extra_data": dict(extra_data or {}),
            "front": front,
        }
        response = self._http.request("POST", "/prompt", json=body)
        if response.status_code == 400:
            raise rejection(self._http.decode_json(response, "/prompt"))
        if response.status_code != 200:
            raise request_error(response)
        data = self._http.decode_json(response, "/prompt")
        try:
            queued = accepted(data)
        except ValueError as exc:
            raise ComfyUnavailable(url=self.display_url, reason=f"/prompt answer: {exc}") from exc
        if queued.node_errors and not allow_partial:
            self._discard(queued.prompt_id)
            raise rejection(data, partial=True)
        return queued

    def _discard(self, prompt_id: str) -> None:
        try:
            self.cancel(prompt_id)
        except ComfyError as exc:  # best effort: the rejection is what the caller needs to see
            log.warning("could not cancel partially accepted prompt %s: %s", prompt_id, exc)

    def get_history(self, prompt_id: str) -> HistoryEntry | None:
        """The history entry, or None while the prompt is queued, running, or unknown."""
        path = f"/history/{_quoted(prompt_id)}"
        body = self._http.get_json(path)
        if not isinstance(body, dict):
            raise ComfyUnavailable(url=self.display_url, reason=f"{path} answered a non-object")
        entry = body.get(prompt_id)
        return HistoryEntry.from_dict(prompt_id, entry) if isinstance(entry, dict) else None

    def recent_history(self, max_items: int) -> list[HistoryEntry]:
        """The ``max_items`` prompts ComfyUI finished last, oldest first (its completion order:
        ComfyUI writes history when a prompt ends, before it takes the next)."""
        body = self._http.get_json("/history", params={"max_items": max_items})
        if not isinstance(body, dict):
            raise ComfyUnavailable(url=self.display_url, reason="/history answered a non-object")
        return [
            HistoryEntry.from_dict(str(prompt_id), entry)
            for prompt_id, entry in body.items()
            if isinstance(entry, dict)
        ]

    def get_queue(self) -> QueueSnapshot:
        return QueueSnapshot.from_dict(self._http.get_json("/queue"))

    def lookup(self, prompt_id: str) -> PromptLookup:
        """Whether ComfyUI has the prompt pending, running, done (with history) or not at all."""
        if self._http.has_jobs_api:
            response = self._http.request("GET", f"/jobs/{_quoted(prompt_id)}")
            if response.status_code == 404:
                return PromptLookup(PromptState.UNKNOWN)
            if response.status_code != 200:
                raise request_error(response)
            state = job_state(self._http.decode_json(response, "/jobs"))
            if state is PromptState.DONE:
                history = self.get_history(prompt_id)
                if history is not None:
                    return PromptLookup(state, history)
            elif state is not PromptState.UNKNOWN:
                return PromptLookup(state)
        # History first, then the queue, then history again: a prompt that finishes between the
        # two calls is in neither the queue nor the first history answer.
        history = self.get_history(prompt_id)
        if history is not None:
            return PromptLookup(PromptState.DONE, history)
        state = self.get_queue().state_of(prompt_id)
        if state is not PromptState.UNKNOWN:
            return PromptLookup(state)
        history = self.get_history(prompt_id)
        if history is not None:
            return PromptLookup(PromptState.DONE, history)
        return PromptLookup(PromptState.UNKNOWN)

    def interrupt(self, prompt_id: str) -> None:
        """Interrupt this prompt if it is the one running (a no-op otherwise). Never global."""
        if not prompt_id:
            raise ValueError("interrupt needs a prompt_id; a global interrupt is never sent")
        self._http.post("/interrupt", {"prompt_id": prompt_id})

    def delete_from_queue(self, prompt_ids: Sequence[str]) -> None:
        """Remove pending prompts (a running one is not affected: use ``interrupt``)."""
        if prompt_ids:
            self._http.post("/queue", {"delete": list(prompt_ids)})

    def cancel(self, prompt_id: str) -> None:
        """Stop a prompt wherever it is: dequeue it if pending, interrupt it if running."""
        if self._http.has_jobs_api:
            response = self._http.request("POST", f"/jobs/{_quoted(prompt_id)}/cancel")
            if response.status_code == 200:
                return
        # Delete first: if it starts running in between, the targeted interrupt still hits it.
        self.delete_from_queue([prompt_id])
        self.interrupt(prompt_id)

    # -- server information -------------------------------------------------------------------

    def object_info(self, node_class: str | None = None) -> dict[str, Any]:
        """Node schemas (all, or one class; an unknown class gives ``{}``)."""
        path = "/object_info" if node_class is None else f"/object_info/{_quoted(node_class)}"
        return self._object(path)

    def model_folders(self) -> list[str]:
        """The names of ComfyUI's model folders (``GET /models``)."""
        body = self._http.get_json("/models")
        if not isinstance(body, list):
            raise ComfyUnavailable(url=self.base_url, reason="/models answered a non-list")
        return [str(folder) for folder in body]

    def list_models(self, folder: str) -> list[str]:
        """File names in a model folder (``checkpoints``, ``loras``...); unknown folder is 404."""
        body = self._http.get_json(f"/models/{_quoted(folder)}")
        if not isinstance(body, list):
            raise ComfyUnavailable(url=self.display_url, reason="/models answered a non-list")
        return [str(name) for name in body]

    def system_stats(self) -> dict[str, Any]:
        return self._object("/system_stats")

    def console_log(self) -> Any:
        """``GET /internal/logs/raw``: ComfyUI's console ring (``comfy.console_log`` reads it)."""
        return self._http.get_json("/internal/logs/raw")

    def free(self, *, unload_models: bool = False, free_memory: bool = False) -> None:
        """Ask ComfyUI to unload models / free memory (applied after the current prompt)."""
        self._http.post("/free", {"unload_models": unload_models, "free_memory": free_memory})

    def _object(self, path: str) -> dict[str, Any]:
        body = self._http.get_json(path)
        if not isinstance(body, dict):
            raise ComfyUnavailable(url=self.display_url, reason=f"{path} answered a non-object")
        return body

    # -- files --------------------------------------------------------------------------------

    def upload_image(
        self,
        data: bytes | IO[bytes] | Path,
        *,
        filename: str,
        subfolder: str = "",
        overwrite: bool = False,
        image_type: str = "input",
    ) -> UploadedFile:
        """Upload a file into ComfyUI's input (or temp/output) folder; use the answered name.

        ``filename`` and ``subfolder`` are checked like outputs (``UnsafeOutputPath``). The
        multipart body is built in memory (ComfyUI caps uploads at 100 MB by default).
        """
        safe_relative_path(subfolder, filename)
        if "/" in filename:
            raise UnsafeOutputPath(
                filename=filename, subfolder=subfolder, reason="upload name contains '/'"
            )
        fields = {"type": image_type, "subfolder": subfolder}
        if overwrite:
            fields["overwrite"] = "true"
        if isinstance(data, Path):
            with data.open("rb") as handle:
                return self._upload(handle, filename, fields)
        return self._upload(data, filename, fields)

    def _upload(
        self, data: bytes | IO[bytes], filename: str, fields: dict[str, str]
    ) -> UploadedFile:
        files = {"image": (filename, data, content_type(filename))}
        response = self._http.request("POST", "/upload/image", data=fields, files=files)
        if response.status_code != 200:
            raise request_error(response)
        try:
            return UploadedFile.from_dict(self._http.decode_json(response, "/upload/image"))
        except ValueError as exc:
            raise ComfyUnavailable(url=self.display_url, reason=f"/upload/image: {exc}") from exc

    def iter_output(
        self, output: OutputFile, chunk_size: int = 1 << 20, *, deadline: float | None = None
    ) -> Iterator[bytes]:
        """Stream an output file from ``GET /view`` in chunks (never the whole body in memory),
        at most ``limits.max_output_bytes`` (``ResponseTooLarge``), complete by ``deadline``
        (a ``time.monotonic()`` time; ``ComfyUnavailable`` after it)."""
        output.relative_path  # noqa: B018 - validates the untrusted name before any request
        params = {"filename": output.filename, "subfolder": output.subfolder, "type": output.type}
        return self._http.stream("/view", params, chunk_size, deadline=deadline)

    def download(self, output: OutputFile, dest: Path) -> int:
        """Stream an output file to ``dest`` (temp file in the same folder, then rename).

        Returns the number of bytes written. ``dest`` never holds a partial file.
        """
        output.relative_path  # noqa: B018 - refuse unsafe names before creating anything
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        total = 0
        try:
            with os.fdopen(fd, "wb") as handle:
                for chunk in self.iter_output(output):
                    handle.write(chunk)
                    total += len(chunk)
            os.chmod(tmp_name, 0o644)
            os.replace(tmp_name, dest)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        return total
