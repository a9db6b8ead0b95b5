"""The simulator's directories (output/, input/, temp/) and ComfyUI's rules for naming files.

Mirrors ComfyUI's ``folder_paths``: ``name [output]`` annotations, ``<prefix>_00001_.png`` counters
continued from the files already on disk, and the refusal to save outside the output folder.
"""

from __future__ import annotations

import mimetypes
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

DIRECTORY_TYPES = ("output", "input", "temp")


class UnsafeSavePath(Exception):
    """Raised when a filename_prefix leaves the output folder (ComfyUI raises a bare Exception)."""


@dataclass(frozen=True)
class SavePath:
    """Where the next file of a save node goes: ``<folder>/<filename>_<counter:05>_.<ext>``."""

    folder: Path
    filename: str
    counter: int
    subfolder: str


class StorageRoots:
    """output/, input/ and temp/ under one root directory."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.output = self.root / "output"
        self.input = self.root / "input"
        self.temp = self.root / "temp"
        shutil.rmtree(self.temp, ignore_errors=True)  # ComfyUI empties temp/ when it starts
        for directory in (self.output, self.input, self.temp):
            directory.mkdir(parents=True, exist_ok=True)
        self._counters: dict[tuple[str, str], int] = {}

    def directory_by_type(self, kind: str | None) -> Path | None:
        return {"output": self.output, "input": self.input, "temp": self.temp}.get(kind or "")

    def annotated_filepath(self, name: str) -> tuple[str, Path | None]:
        """Split ``"x.png [output]"`` into ``("x.png", output_dir)``; no annotation gives None."""
        for kind in DIRECTORY_TYPES:
            suffix = f"[{kind}]"
            if name.endswith(suffix):
                return name[: -len(suffix) - 1], self.directory_by_type(kind)
        return name, None

    def annotated_path(self, name: str, default: Path | None = None) -> Path:
        plain, base = self.annotated_filepath(name)
        return Path(os.path.join(base or default or self.input, plain))

    def exists_annotated(self, name: str) -> bool:
        return self.annotated_path(name).exists()

    def input_images(self) -> list[str]:
        """LoadImage's choices: image files directly in input/, sorted (like ComfyUI)."""
        names = []
        for entry in os.scandir(self.input):
            if entry.is_file():
                kind = mimetypes.guess_type(entry.name)[0] or ""
                if kind.startswith("image/"):
                    names.append(entry.name)
        return sorted(names)

    def next_save_path(self, prefix: str, base: Path, width: int = 0, height: int = 0) -> SavePath:
        """ComfyUI's ``get_save_image_path``; counters live in memory after one directory scan."""
        if "%" in prefix:
            prefix = _expand_variables(prefix, width, height)
        subfolder = os.path.dirname(os.path.normpath(prefix))
        filename = os.path.basename(os.path.normpath(prefix))
        folder = os.path.join(base, subfolder)
        common = os.path.commonpath((str(base), os.path.abspath(folder)))
        if common != str(base):
            raise UnsafeSavePath(
                "**** ERROR: Saving image outside the output folder is not allowed."
                f"\n full_output_folder: {os.path.abspath(folder)}"
                f"\n         output_dir: {base}"
                f"\n         commonpath: {common}"
            )
        key = (os.path.abspath(folder), os.path.normcase(filename))
        counter = self._counters.get(key)
        if counter is None:
            counter = _scan_counter(Path(folder), filename)
        return SavePath(Path(folder), filename, counter, subfolder)

    def commit_save(self, path: SavePath, used: int) -> None:
        """Record that ``used`` files were written from ``path.counter`` on."""
        key = (os.path.abspath(path.folder), os.path.normcase(path.filename))
        self._counters[key] = path.counter + used


def _scan_counter(folder: Path, filename: str) -> int:
    """1 + the highest counter among ``<filename>_NNNNN_*`` files already in ``folder``."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        folder.mkdir(parents=True, exist_ok=True)
        return 1
    best = 0
    size = len(filename)
    for name in names:
        head = name[: size + 1]
        if os.path.normcase(head[:-1]) != os.path.normcase(filename) or head[-1:] != "_":
            continue
        try:
            digits = int(name[size + 1 :].split("_")[0])
        except ValueError:
            digits = 0
        best = max(best, digits)
    return best + 1


def _expand_variables(prefix: str, width: int, height: int) -> str:
    now = time.localtime()
    replacements = {
        "%width%": str(width),
        "%height%": str(height),
        "%year%": str(now.tm_year),
        "%month%": f"{now.tm_mon:02}",
        "%day%": f"{now.tm_mday:02}",
        "%hour%": f"{now.tm_hour:02}",
        "%minute%": f"{now.tm_min:02}",
        "%second%": f"{now.tm_sec:02}",
    }
    for key, value in replacements.items():
        prefix = prefix.replace(key, value)
    return prefix
