"""ModelFile: a model a job needs in its worker's ComfyUI ``models/`` folder before it runs.

A job's ``models`` option lists them (``{folder, name, url, blake3?}``); the worker downloads
each missing one into ``<models_dir>/<folder>/<name>`` before the prompt (``worker/models.py``:
once per file however many jobs wait, verified when ``blake3`` is given, renamed into place), so
the prompt can name it by ``name`` like a file the operator put there.

Checked here, by producer and worker alike: ``folder`` one ComfyUI folder name (``checkpoints``,
``loras``, ...: lowercase letters, digits, ``_``), ``name`` a plain file name (no path: nothing
lands outside the folder) with a model extension, ``url`` http(s), ``blake3`` 64 hex digits.
The command line takes ``FOLDER/NAME=URL`` (``--model checkpoints/x.safetensors=https://…``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from comfyfarm.tasks import fields as f
from comfyfarm.tasks.errors import JobSpecError

E = JobSpecError
MODEL_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf")
MAX_MODELS = 64
_FOLDER = re.compile(r"[a-z0-9_]{1,64}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, kw_only=True)
class ModelFile:
    """One model file a job needs (see the module docstring)."""

    folder: str
    name: str
    url: str
    blake3: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.folder, str) or not _FOLDER.fullmatch(self.folder):
            f.fail(
                E, "folder", "must be a ComfyUI models folder name (a-z 0-9 _), e.g. checkpoints"
            )
        f.filename(E, "name", self.name)
        if (
            "/" in self.name
            or "\\" in self.name
            or not self.name.lower().endswith(MODEL_EXTENSIONS)
        ):
            f.fail(E, "name", f"must be a file name ending in {', '.join(MODEL_EXTENSIONS)}")
        f.url(E, "url", self.url, schemes=("http", "https"), max_len=4096)
        if self.blake3 is not None and not (
            isinstance(self.blake3, str) and _HEX64.fullmatch(self.blake3)
        ):
            f.fail(E, "blake3", "must be 64 lowercase hex digits")

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"folder": self.folder, "name": self.name, "url": self.url}
        if self.blake3 is not None:
            body["blake3"] = self.blake3
        return body

    @classmethod
    def from_value(cls, value: object) -> ModelFile:
        """A ModelFile, a mapping of its fields, or ``"FOLDER/NAME=URL"``."""
        if isinstance(value, ModelFile):
            return value
        if isinstance(value, str):
            where, sep, url = value.partition("=")
            folder, slash, name = where.partition("/")
            if not sep or not slash:
                f.fail(
                    E,
                    "",
                    "must look like FOLDER/NAME=URL, e.g. checkpoints/x.safetensors=https://…",
                )
            return cls(folder=folder, name=name, url=url)
        d: Mapping[str, Any] = f.mapping(E, "", value)
        return cls(
            folder=f.required(E, d, "folder"),
            name=f.required(E, d, "name"),
            url=f.required(E, d, "url"),
            blake3=d.get("blake3"),
        )


def model_files(value: object) -> list[ModelFile]:
    """The ``models`` of a job; raises JobSpecError naming the item (``models[1].url``)."""
    items = f.list_of(E, "models", value, max_items=MAX_MODELS)
    models = []
    for index, item in enumerate(items):
        with f.within(f"models[{index}]"):
            models.append(ModelFile.from_value(item))
    return models
