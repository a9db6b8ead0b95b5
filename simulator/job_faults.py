"""The faults decided for one job, and the ``evil_output`` rewrite of the names it reports.

The worker decides at job start (``comfyfarm.simulator.faults`` counts one occurrence per job); the
executor then applies them: a node error in the first matching node, a hang once enough time
has passed, unsafe file names in ``executed`` and the history (the files keep their real names).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# mode -> (real filename -> (reported filename, reported subfolder or None to keep it))
EVIL_NAMES: dict[str, Callable[[str], tuple[str, str | None]]] = {
    "dotdot": lambda name: ("../" + name, None),
    "absolute": lambda name: ("/tmp/comfyfarm-evil/" + name, None),  # noqa: S108 (a reported name)
    "nul": lambda name: (name + "\x00.txt", None),
    "subfolder": lambda name: (name, "../../.."),
}


@dataclass
class JobFaults:
    node_error: dict[str, Any] | None = None
    hang_after_ms: float | None = None
    evil_mode: str | None = None


def disguise_outputs(ui: dict[str, Any], mode: str | None) -> dict[str, Any]:
    """``ui`` with every reported file name made unsafe according to ``mode`` (None: unchanged)."""
    if mode is None:
        return ui
    rename = EVIL_NAMES[mode]
    disguised: dict[str, Any] = {}
    for key, items in ui.items():
        if not isinstance(items, list):
            disguised[key] = items
            continue
        renamed = []
        for item in items:
            if isinstance(item, dict) and "filename" in item:
                filename, subfolder = rename(item["filename"])
                item = {**item, "filename": filename}
                if subfolder is not None:
                    item["subfolder"] = subfolder
            renamed.append(item)
        disguised[key] = renamed
    return disguised
