"""The shipped workflow library (``workflows/library/``): say ``sd15_text2image`` instead of a path.

Each library workflow is ``<name>.api.json`` (API format, runs without node schemas) and/or
``<name>.json`` (UI format, as the editor saved it), with ``<name>.params.toml`` naming its
parameters. When both formats exist, the API file is used: it needs no conversion.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from comfyfarm.workflows.errors import WorkflowNotFound

LIBRARY_DIR = Path(__file__).resolve().parent / "library"


def list_workflows() -> list[str]:
    """Names of the shipped workflows, sorted."""
    names: set[str] = set()
    for path in LIBRARY_DIR.glob("*.json"):
        name = path.name[: -len(".json")]
        names.add(name[: -len(".api")] if name.endswith(".api") else name)
    return sorted(names)


def find_workflow(name_or_path: str | Path) -> Path:
    """An existing file path as given, else the library file of that name.

    ``sd15_text2image`` finds ``sd15_text2image.api.json`` (else ``.json``); a name with its
    suffix (``sd15_text2image.json``) finds exactly that library file.
    """
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    given = str(name_or_path)
    name = given
    for suffix in (".json", ".api"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if "/" not in given and "\\" not in given:
        candidates = [LIBRARY_DIR / given] if given.endswith(".json") else []
        candidates += [LIBRARY_DIR / f"{name}.api.json", LIBRARY_DIR / f"{name}.json"]
        for candidate in candidates:
            if candidate.is_file():
                return candidate
    available = list_workflows()
    close = difflib.get_close_matches(name, available, n=1, cutoff=0.6)
    raise WorkflowNotFound(
        name=str(name_or_path), available=available, suggestion=close[0] if close else None
    )
