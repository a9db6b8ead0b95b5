"""Node schemas: the entries of ``data/object_info.json``, file lists filled in on every read.

The JSON holds real ComfyUI 0.3.64 ``/object_info`` entries. Lists that depend on the machine
(checkpoints, VAEs, LoRAs, LoadImage's input files) are replaced on every read, as ComfyUI does.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from comfyfarm.simulator.files import StorageRoots

# (class_type, input_name) -> how to fill its choice list.
_ListSource = Callable[["NodeSchemas"], list[str]]
_DYNAMIC_LISTS: dict[tuple[str, str], _ListSource] = {
    ("CheckpointLoaderSimple", "ckpt_name"): lambda s: s.model_files("checkpoints"),
    ("VAELoader", "vae_name"): lambda s: [*s.model_files("vae"), "pixel_space"],
    ("LoraLoader", "lora_name"): lambda s: s.model_files("loras"),
    ("LoadImage", "image"): lambda s: s.roots.input_images(),
}


def _load_entries() -> dict[str, Any]:
    text = (
        resources.files("comfyfarm.simulator").joinpath("data/object_info.json").read_text("utf-8")
    )
    entries: dict[str, Any] = json.loads(text)
    return entries


MODEL_SUFFIXES = frozenset({".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft"})


class NodeSchemas:
    """The node classes this simulator knows, their inputs, outputs and output-node flag."""

    roots: StorageRoots

    def __init__(
        self,
        models: Mapping[str, tuple[str, ...]],
        roots: StorageRoots,
        *,
        models_dir: Path | None = None,
    ) -> None:
        self._entries = _load_entries()
        self._models = {folder: sorted(files) for folder, files in models.items()}
        self.roots = roots
        self.models_dir = models_dir

    def __contains__(self, class_type: object) -> bool:
        return isinstance(class_type, str) and class_type in self._entries

    @property
    def class_types(self) -> list[str]:
        return list(self._entries)

    def model_files(self, folder: str) -> list[str]:
        """The folder's files: the configured names plus, as ComfyUI does, what is in
        ``models_dir/<folder>`` now (relative POSIX paths; partial downloads excluded)."""
        files = set(self._models.get(folder, ()))
        directory = self.models_dir / folder if self.models_dir else None
        if directory is not None and directory.is_dir():
            for path in directory.rglob("*"):
                if path.is_file() and path.suffix.lower() in MODEL_SUFFIXES:
                    files.add(path.relative_to(directory).as_posix())
        return sorted(files)

    def is_output(self, class_type: str) -> bool:
        return bool(self._entries[class_type].get("output_node"))

    def return_types(self, class_type: str) -> tuple[str, ...]:
        return tuple(self._entries[class_type]["output"])

    def class_inputs(self, class_type: str, *, fill_lists: bool = True) -> dict[str, Any]:
        """The ``input`` mapping (required/optional/hidden); file lists only with ``fill_lists``."""
        if not fill_lists:
            return self._entries[class_type]["input"]  # type: ignore[no-any-return]
        return self.entry(class_type)["input"]  # type: ignore[no-any-return]

    def entry(self, class_type: str) -> dict[str, Any]:
        """One ``/object_info`` entry, as the real server would answer now."""
        entry = self._entries[class_type]
        dynamic = [
            (name, source) for (cls, name), source in _DYNAMIC_LISTS.items() if cls == class_type
        ]
        if not dynamic:
            return entry  # type: ignore[no-any-return]
        entry = copy.deepcopy(entry)
        for name, source in dynamic:
            spec = entry["input"]["required"][name]
            spec[0] = source(self)
        return entry  # type: ignore[no-any-return]

    def object_info(self) -> dict[str, Any]:
        return {class_type: self.entry(class_type) for class_type in self._entries}
