"""Input files of a job: fetched from where the producer pointed, uploaded into ComfyUI.

Each job's inputs go into their own subfolder (``comfyfarm/<job_id>``) on ComfyUI with
``overwrite=true``, so jobs never clobber each other's files and a retried job re-uploads the same
names. The prompt is rewritten to reference the uploaded files.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import requests

from tasks.models import InputFile, JobSpec
from worker.comfy.client import ComfyClient

MAX_INPUT_BYTES = 100 * 1024 * 1024  # ComfyUI's default --max-upload-size
DOWNLOAD_TIMEOUT = 30.0


class InputFileError(Exception):
    """Raised when an input file cannot be read or fetched (missing, unreadable, too big)."""

    def __init__(self, *, node_id: str, input_name: str, source: str, reason: str) -> None:
        self.node_id, self.input_name, self.source, self.reason = (
            node_id,
            input_name,
            source,
            reason,
        )
        super().__init__(f"input {node_id}.{input_name} from {source!r}: {reason}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": type(self).__name__,
            "message": str(self),
            "node_id": self.node_id,
            "input_name": self.input_name,
            "source": self.source,
            "reason": self.reason,
        }


def upload_inputs(client: ComfyClient, spec: JobSpec) -> dict[str, Any]:
    """Upload every input file of ``spec`` and return a copy of its prompt that points at them."""
    prompt = copy.deepcopy(spec.prompt)
    subfolder = f"comfyfarm/{spec.job_id}"
    for item in spec.inputs:
        data = read_input(item)
        filename = item.filename or Path(item.source.split("?", 1)[0]).name or "input.png"
        uploaded = client.upload_image(data, filename=filename, subfolder=subfolder, overwrite=True)
        prompt[item.node_id]["inputs"][item.input_name] = uploaded.reference
    return prompt


def read_input(item: InputFile) -> bytes:
    """The bytes of one input file (local path on shared storage or http(s) URL), size-capped."""
    source = item.source
    if source.startswith(("http://", "https://")):
        return _download(item)
    path = Path(source[len("file://") :] if source.startswith("file://") else source)
    try:
        size = path.stat().st_size
        if size > MAX_INPUT_BYTES:
            raise _error(item, f"{size} bytes is over the {MAX_INPUT_BYTES}-byte limit")
        return path.read_bytes()
    except OSError as exc:
        raise _error(item, exc.strerror or str(exc)) from exc


def _download(item: InputFile) -> bytes:
    try:
        with requests.get(item.source, stream=True, timeout=DOWNLOAD_TIMEOUT) as response:
            response.raise_for_status()
            chunks: list[bytes] = []
            total = 0
            for chunk in response.iter_content(1 << 16):
                total += len(chunk)
                if total > MAX_INPUT_BYTES:
                    raise _error(item, f"over the {MAX_INPUT_BYTES}-byte limit")
                chunks.append(chunk)
            return b"".join(chunks)
    except requests.RequestException as exc:
        raise _error(item, str(exc)) from exc


def _error(item: InputFile, reason: str) -> InputFileError:
    return InputFileError(
        node_id=item.node_id, input_name=item.input_name, source=item.source, reason=reason
    )
