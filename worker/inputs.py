"""Input files of a job: fetched from where the producer pointed, uploaded into ComfyUI.

Each job's inputs go into their own subfolder (``comfyfarm/<job_id>``) on ComfyUI with
``overwrite=true``, so jobs never clobber each other's files and a retried job re-uploads the same
names. Within one job, a source used by several inputs is uploaded once, and two different
sources with the same file name get distinct names. The prompt is rewritten to reference the
uploaded files.

Once ComfyUI is done with the prompt, ``clear_inputs`` empties the job's files: ComfyUI (0.3.64,
and the newest ``server.py`` too) has no route that deletes an input file, so each one is
uploaded again with ``overwrite=true`` and no bytes. What stays is one empty file per input in
``input/comfyfarm/<job_id>/``; an operator removes those with
``find input/comfyfarm -type f -size 0 -delete`` (LoadImage lists only top-level files, so they
never show up in the editor).

Sources: an absolute path on shared storage (or ``file://`` URI), an ``http(s)://`` URL (fetched
under the SSRF policy of ``worker/fetch.py`` through the worker's cache, ``worker/input_cache.py``),
or a storage URI (``s3://bucket/key``, ``memory://name/key``). A URI under the worker's own store
(an uploaded asset's blob, a previous job's output) is read through that store, with its
endpoint, region and credentials; another ``s3://`` URI in the bucket of the worker's own storage
is read with that storage's endpoint and region.

```
InputFileError(node_id, input_name, source, reason)   missing, unreadable, too big, refused (4xx)
└── InputUnavailable                                  retryable: connection, timeout, 5xx, storage
```
"""

from __future__ import annotations

import copy
import functools
import logging
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO
from urllib.parse import unquote, urlsplit

from comfyfarm.comfy.client import ComfyClient
from comfyfarm.comfy.errors import ComfyError
from comfyfarm.storage import OutputStore, StorageError, StorageUnavailable, open_store
from comfyfarm.storage.keys import key_of_uri
from comfyfarm.tasks.models import InputFile, JobSpec
from comfyfarm.tasks.settings import Settings
from comfyfarm.worker.fetch import FetchError, FetchPolicy, display_url, fetch
from comfyfarm.worker.input_cache import InputCache

log = logging.getLogger(__name__)

MAX_INPUT_BYTES = 100 * 1024 * 1024  # ComfyUI's default --max-upload-size
JOB_INPUT_FOLDER = "comfyfarm"


class InputFileError(Exception):
    """Raised when an input file cannot be read or fetched (missing, unreadable, too big)."""

    def __init__(self, *, node_id: str, input_name: str, source: str, reason: str) -> None:
        self.node_id = node_id
        self.input_name = input_name
        self.source = source
        self.reason = reason
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


class InputUnavailable(InputFileError):
    """Raised when an input's source cannot be reached right now (connection error, timeout,
    HTTP 5xx, storage unavailable); retrying later may succeed."""


def job_input_folder(job_id: str) -> str:
    """The ComfyUI input subfolder of one job's files."""
    return f"{JOB_INPUT_FOLDER}/{job_id}"


@dataclass
class InputSources:
    """How URLs are fetched: the SSRF/size/time policy and the worker's cache (worker/fetch.py,
    worker/input_cache.py)."""

    policy: FetchPolicy
    cache: InputCache | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> InputSources:
        policy = FetchPolicy.parse(
            settings.input_allow, max_bytes=settings.max_input_bytes, timeout=settings.input_timeout
        )
        cache = None
        if settings.input_cache_mb > 0:
            root = settings.input_cache_dir or str(Path.home() / ".cache/comfyfarm/inputs")
            cache = InputCache(Path(root), max_bytes=settings.input_cache_mb << 20)
        return cls(policy, cache)

    def fetch(self, url: str) -> bytes:
        if self.cache is not None:
            return self.cache.get(url, self.policy)
        body = fetch(url, self.policy)
        body.raise_for_status()
        return b"".join(body.chunks())


@functools.cache
def default_sources() -> InputSources:
    """This process's sources, from the environment's settings (read once, at first use)."""
    return InputSources.from_settings(Settings.from_env())


def upload_inputs(
    client: ComfyClient,
    spec: JobSpec,
    *,
    storage_url: str | None = None,
    store: OutputStore | None = None,
    sources: InputSources | None = None,
) -> dict[str, Any]:
    """Upload every input file of ``spec`` and return a copy of its prompt that points at them.

    ``store`` is the worker's own output store (sources under it are read through it);
    ``storage_url`` its URL (used to read other ``s3://`` inputs in its bucket with its
    endpoint); ``sources`` fetch URLs (default: ``default_sources()``).
    """
    prompt = copy.deepcopy(spec.prompt)
    subfolder = job_input_folder(spec.job_id)
    names = upload_names(spec)
    uploaded_by_source: dict[str, str] = {}
    for item in spec.inputs:
        reference = uploaded_by_source.get(item.source)
        if reference is None:
            data = read_input(item, storage_url=storage_url, store=store, sources=sources)
            uploaded = client.upload_image(
                data, filename=names[item.source], subfolder=subfolder, overwrite=True
            )
            reference = uploaded_by_source[item.source] = uploaded.reference
        prompt[item.node_id]["inputs"][item.input_name] = reference
    return prompt


def upload_names(spec: JobSpec) -> dict[str, str]:
    """The file name each input source gets in the job's folder (the same on every delivery)."""
    names: dict[str, str] = {}
    source_by_name: dict[str, str] = {}
    for index, item in enumerate(spec.inputs):
        if item.source in names:
            continue
        filename = item.filename or PurePosixPath(item.source.split("?", 1)[0]).name
        filename = filename or "input.png"
        if source_by_name.get(filename, item.source) != item.source:
            filename = f"{index}_{filename}"  # same name, different file: keep both
        source_by_name[filename] = item.source
        names[item.source] = filename
    return names


def clear_inputs(client: ComfyClient, spec: JobSpec) -> int:
    """Empty the job's uploaded files on ComfyUI (see the module docstring); best effort.

    Call it only when ComfyUI will not run the prompt again (finished, failed, cancelled).
    Returns how many files were emptied; a ComfyUI that does not answer is logged, not raised.
    """
    subfolder = job_input_folder(spec.job_id)
    cleared = 0
    for filename in upload_names(spec).values():
        try:
            client.upload_image(b"", filename=filename, subfolder=subfolder, overwrite=True)
        except ComfyError as exc:
            log.warning("could not clear input %s/%s: %s", subfolder, filename, exc)
            break
        cleared += 1
    return cleared


def read_input(
    item: InputFile,
    *,
    storage_url: str | None = None,
    store: OutputStore | None = None,
    sources: InputSources | None = None,
) -> bytes:
    """The bytes of one input file, size-capped (see the module docstring for sources)."""
    source = item.source
    key = key_of_uri(store.url, source) if store is not None else None
    if store is not None and key is not None:
        return _read_from(item, store, key)
    scheme = urlsplit(source).scheme if "://" in source else ""
    if scheme in ("http", "https"):
        return _download(item, sources or default_sources())
    if scheme in ("s3", "memory"):
        return _read_stored(item, storage_url)
    if scheme == "file":
        parts = urlsplit(source)
        if parts.netloc not in ("", "localhost"):
            raise _error(item, "file:// URIs must be local (file:///path)")
        path = Path(unquote(parts.path))
    elif scheme:
        raise _error(item, f"unsupported source scheme {scheme!r}")
    else:
        path = Path(source)
    try:
        size = path.stat().st_size
        if size > MAX_INPUT_BYTES:
            raise _error(item, f"{size} bytes is over the {MAX_INPUT_BYTES}-byte limit")
        return path.read_bytes()
    except OSError as exc:
        raise _error(item, exc.strerror or str(exc)) from exc


def _read_from(item: InputFile, store: OutputStore, key: str) -> bytes:
    try:
        with store.open_read(key) as handle:
            return _capped(item, handle)
    except StorageUnavailable as exc:
        raise _error(item, exc.reason, retryable=True) from exc
    except StorageError as exc:
        raise _error(item, exc.reason) from exc


def _read_stored(item: InputFile, storage_url: str | None) -> bytes:
    parts = urlsplit(item.source)
    key = unquote(parts.path.lstrip("/"))
    if parts.scheme == "s3":
        own = urlsplit(storage_url or "")
        same_bucket = own.scheme == "s3" and own.netloc == parts.netloc
        query = f"?{own.query}" if same_bucket and own.query else ""
        store_url = f"s3://{parts.netloc}{query}"
    else:
        store_url = f"memory://{parts.netloc}"
    try:
        store = open_store(store_url)
        with store.open_read(key) as handle:
            return _capped(item, handle)
    except StorageUnavailable as exc:
        raise _error(item, exc.reason, retryable=True) from exc
    except (StorageError, ValueError) as exc:
        raise _error(item, getattr(exc, "reason", str(exc))) from exc


def _capped(item: InputFile, handle: BinaryIO) -> bytes:
    data = handle.read(MAX_INPUT_BYTES + 1)
    if len(data) > MAX_INPUT_BYTES:
        raise _error(item, f"over the {MAX_INPUT_BYTES}-byte limit")
    return data


def _download(item: InputFile, sources: InputSources) -> bytes:
    try:
        return sources.fetch(item.source)
    except FetchError as exc:
        raise _error(item, exc.reason, retryable=exc.retryable) from exc


def _error(item: InputFile, reason: str, *, retryable: bool = False) -> InputFileError:
    kind = InputUnavailable if retryable else InputFileError
    shown = display_url(item.source) if "://" in item.source else item.source
    return kind(node_id=item.node_id, input_name=item.input_name, source=shown, reason=reason)
