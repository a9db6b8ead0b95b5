"""Models on demand: a workflow names a model by URL, the worker fetches it into its ComfyUI's
``models/`` folder before the prompt, once, and rewrites the input to the local name.

``ckpt_name: "https://host/path/sd15.safetensors"`` (also LoRA, VAE, ControlNet, upscale and
the other loader inputs that ``workflows/models.py`` maps to folders) becomes
``ckpt_name: "sd15.safetensors"`` after the file is in ``<models_dir>/checkpoints/``. The worker
is started with ``--models-dir`` (its co-located ComfyUI's ``models/`` folder, which ComfyUI
re-lists when it changes).

- One download per file however many jobs (and pool processes) want it: an exclusive ``flock``
  on ``<file>.comfyfarm-lock``; the others wait and then find the file.
- Downloaded to a temp file in the same folder, verified against ``#blake3=<hex>`` in the URL's
  fragment when given, then renamed into place: ComfyUI never sees a partial file.
- Only model extensions (``.safetensors``, ``.ckpt``, ``.pt``, ``.pth``, ``.bin``, ``.gguf``);
  the file name is the URL's last path segment, checked to stay inside the folder.
- URLs go through the same SSRF policy as inputs (``worker/fetch.py``), with a model-size cap
  and a time limit of their own (``COMFYFARM_MAX_MODEL_BYTES``, ``COMFYFARM_MODEL_TIMEOUT``).
- Errors are the inputs' (``InputFileError``, retryable ``InputUnavailable``), naming node,
  input and the URL without credentials.
- A job's ``models`` list (``tasks.model_files.ModelFile``: folder, name, url, blake3?) is
  fetched the same way before the prompt (``fetch_job_models``), under the name it gives.
- A budget (``COMFYFARM_MODELS_CACHE_GB``) evicts the least recently used *downloaded* files
  (recorded in ``.comfyfarm-downloads.json``); files the operator put there are never removed.
"""

from __future__ import annotations

import copy
import fcntl
import functools
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

from comfyfarm.tasks.model_files import ModelFile
from comfyfarm.tasks.settings import Settings
from comfyfarm.worker.fetch import FetchError, FetchPolicy, display_url, fetch
from comfyfarm.worker.inputs import InputFileError, InputUnavailable
from comfyfarm.workflows.models import DOWNLOADABLE_MODEL_EXTENSIONS, folder_of_input

ALLOWED_EXTENSIONS = DOWNLOADABLE_MODEL_EXTENSIONS
INDEX_NAME = ".comfyfarm-downloads.json"
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,200}")


Progress = Callable[[str, int, int], None]  # (node id, bytes done, bytes in all or 0)


def _no_progress(node_id: str, done: int, total: int) -> None:
    pass


def resolve_models(prompt: dict[str, Any], on_progress: Progress = _no_progress) -> dict[str, Any]:
    """``prompt`` with its model URLs fetched and replaced by local names; unchanged (the same
    object) when it names no model by URL. Raises InputFileError when it does and this worker
    has no models folder."""
    urls = [
        (node_id, name)
        for node_id, node in prompt.items()
        if isinstance(node, dict)
        for name, value in (node.get("inputs") or {}).items()
        if is_model_url(value) and folder_of_input(str(node.get("class_type", "")), name)
    ]
    if not urls:
        return prompt
    store = default_model_store()
    if store is None:
        node_id, name = urls[0]
        raise InputFileError(
            node_id=node_id, input_name=name,
            source=display_url(prompt[node_id]["inputs"][name]),
            reason="this worker has no models folder to download into (start it with "
            "--models-dir, env COMFYFARM_MODELS_DIR)",
        )  # fmt: skip
    return store.resolve(prompt, on_progress)


def fetch_job_models(models: Sequence[ModelFile], on_progress: Progress = _no_progress) -> None:
    """Make sure every model of a job's ``models`` list is in the models folder (download the
    missing ones). Errors name ``models[i]`` and its URL; without a models folder the first
    model fails the job."""
    if not models:
        return
    store = default_model_store()
    for index, model in enumerate(models):
        where = f"models[{index}]"
        if store is None:
            raise InputFileError(
                node_id=where, input_name=model.name, source=display_url(model.url),
                reason="this worker has no models folder to download into (start it with "
                "--models-dir, env COMFYFARM_MODELS_DIR)",
            )  # fmt: skip
        store.ensure(model.folder, model.url, where, model.name, on_progress,
                     name=model.name, blake3=model.blake3)  # fmt: skip


@functools.cache
def default_model_store() -> ModelStore | None:
    """This process's model store, from the environment's settings (None without a folder)."""
    settings = Settings.from_env()
    if not settings.models_dir:
        return None
    policy = FetchPolicy.parse(
        settings.input_allow, max_bytes=settings.max_model_bytes, timeout=settings.model_timeout
    )
    budget = int(settings.models_cache_gb * (1 << 30))
    return ModelStore(Path(settings.models_dir), policy, budget)


def is_model_url(value: object) -> bool:
    return isinstance(value, str) and value.startswith(("https://", "http://"))


@dataclass
class ModelStore:
    """A ComfyUI ``models/`` folder that the worker may add downloaded files to."""

    root: Path
    policy: FetchPolicy
    budget_bytes: int = 0  # 0: no eviction

    def resolve(
        self, prompt: dict[str, Any], on_progress: Progress = _no_progress
    ) -> dict[str, Any]:
        """A copy of ``prompt`` whose model URLs are replaced by local names (fetched if needed)."""
        resolved = copy.deepcopy(prompt)
        for node_id, node in resolved.items():
            inputs = node.get("inputs") if isinstance(node, dict) else None
            if not isinstance(inputs, dict):
                continue
            for name, value in inputs.items():
                folder = folder_of_input(str(node.get("class_type", "")), name)
                if folder and is_model_url(value):
                    inputs[name] = self.ensure(folder, value, node_id, name, on_progress)
        return resolved

    def ensure(self, folder: str, url: str, node_id: str, input_name: str,
               on_progress: Progress = _no_progress, *, name: str | None = None,
               blake3: str | None = None) -> str:  # fmt: skip
        """The local name of the model at ``url`` in ``folder``, downloading it once.
        ``name``: the file name to use (default: the URL's last path segment); ``blake3``: the
        expected hash (default: ``#blake3=`` in the URL)."""

        def fail(reason: str, retryable: bool = False) -> InputFileError:
            kind = InputUnavailable if retryable else InputFileError
            return kind(node_id=node_id, input_name=input_name, source=display_url(url),
                        reason=reason)  # fmt: skip

        parts = urlsplit(url)
        name = name or unquote(PurePosixPath(parts.path).name)
        if not name.lower().endswith(ALLOWED_EXTENSIONS):
            raise fail(f"the file name must end in one of {', '.join(ALLOWED_EXTENSIONS)}")
        if not _SAFE_NAME.fullmatch(name):
            raise fail(f"unsafe file name {name!r}")
        expected = blake3 or (parts.fragment.removeprefix("blake3=") if parts.fragment else "")
        if expected and not re.fullmatch(r"[0-9a-f]{64}", expected):
            raise fail("the fragment must be #blake3=<64 hex digits>")
        directory = self.root / folder
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / name
        if target.resolve().parent != directory.resolve():
            raise fail("the file would land outside the models folder")
        with _locked(directory / f".{name}.comfyfarm-lock"):
            downloaded = False
            if not target.exists():
                try:
                    self._download(
                        url, target, expected, lambda done, total: on_progress(node_id, done, total)
                    )
                except FetchError as exc:
                    raise fail(exc.reason, exc.retryable) from exc
                except ValueError as exc:
                    raise fail(str(exc)) from exc
                downloaded = True
            self._touch(f"{folder}/{name}", downloaded)
        self._evict(keep=f"{folder}/{name}")
        return name

    def _download(self, url: str, target: Path, expected: str,
                  on_progress: Callable[[int, int], None]) -> None:  # fmt: skip
        from blake3 import blake3

        body = fetch(url, self.policy)
        body.raise_for_status()
        total = int(body.headers.get("Content-Length") or 0)
        hasher, done, reported = blake3(), 0, 0.0
        handle, temp = tempfile.mkstemp(dir=target.parent, prefix=".comfyfarm-tmp-")
        try:
            with os.fdopen(handle, "wb") as out:
                for chunk in body.chunks(1 << 20):
                    out.write(chunk)
                    hasher.update(chunk)
                    done += len(chunk)
                    if time.monotonic() - reported >= 0.5:  # at most twice a second
                        reported = time.monotonic()
                        on_progress(done, total)
            digest = hasher.hexdigest()
            if expected and digest != expected:
                raise ValueError(f"BLAKE3 of the download is {digest}, the URL says {expected}")
            os.replace(temp, target)
        finally:
            Path(temp).unlink(missing_ok=True)

    # -- the downloads index and eviction ------------------------------------------------------

    def _index(self) -> dict[str, float]:
        try:
            data = json.loads((self.root / INDEX_NAME).read_text())
            return {str(k): float(v) for k, v in data.items()} if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _touch(self, key: str, downloaded: bool) -> None:
        """Record a use of a downloaded file (files the operator put there are not recorded,
        so they are never evicted)."""
        with _locked(self.root / f"{INDEX_NAME}.lock"):
            index = self._index()
            if downloaded or key in index:
                index[key] = time.time()
                _write_json(self.root / INDEX_NAME, index)

    def _evict(self, keep: str) -> None:
        """Remove least recently used downloads until the budget holds (never ``keep``)."""
        if not self.budget_bytes:
            return
        with _locked(self.root / f"{INDEX_NAME}.lock"):
            index = self._index()
            sizes = {}
            for key in index:
                try:
                    sizes[key] = (self.root / key).stat().st_size
                except OSError:
                    sizes[key] = 0
            total = sum(sizes.values())
            for key, _ in sorted(index.items(), key=lambda item: item[1]):
                if total <= self.budget_bytes:
                    break
                if key == keep:
                    continue
                (self.root / key).unlink(missing_ok=True)
                total -= sizes[key]
                del index[key]
            _write_json(self.root / INDEX_NAME, index)


class _locked:
    """An exclusive ``flock`` on ``path`` (created if missing) for the ``with`` block."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> None:
        self.handle = self.path.open("a")
        fcntl.flock(self.handle, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()


def _write_json(path: Path, data: Any) -> None:
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=".comfyfarm-tmp-")
    with os.fdopen(handle, "w") as out:
        json.dump(data, out)
    os.replace(temp, path)
