"""The layering's "nevers", read statically from the source (``ast``, nothing is imported).

Every import statement counts, module-level or inside a function (a lazy import is still a
dependency); ``from comfyfarm import x`` counts as an import of ``comfyfarm.x``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = ROOT / "comfyfarm"
# The parts: comfyfarm/<part> is a symlink to the repository's top-level <part>/ folder.
PARTS = sorted(entry.name for entry in NAMESPACE.iterdir() if entry.is_symlink())
# The app: every other module of comfyfarm/ (cli, commands, demo, services, ...).
APP = sorted(
    f"comfyfarm.{entry.stem if entry.suffix == '.py' else entry.name}"
    for entry in NAMESPACE.iterdir()
    if not entry.is_symlink()
    and entry.name not in ("__init__.py", "__main__.py", "__pycache__")
    and (entry.suffix == ".py" or (entry / "__init__.py").is_file())
)


@dataclass(frozen=True)
class Rule:
    """Modules under ``source`` never import ``forbidden`` prefixes (``allowed`` excepted)."""

    source: str
    forbidden: tuple[str, ...]
    allowed: tuple[str, ...] = ()
    why: str = ""


RULES = [
    Rule(
        "comfyfarm.producer",
        ("comfyfarm.worker", "comfyfarm.comfy", "comfyfarm.simulator", "websocket", "aiohttp"),
        why="a producer machine has no worker, ComfyUI client, WebSocket or aiohttp code",
    ),
    Rule("comfyfarm.tasks", ("comfyfarm",), ("comfyfarm.tasks",), "the contract stands alone"),
    Rule("comfyfarm.simulator", ("comfyfarm",), ("comfyfarm.simulator",), "a stand-in ComfyUI"),
    Rule("comfyfarm.comfy", ("comfyfarm.worker", "comfyfarm.producer"), why="a plain client"),
    Rule("comfyfarm.storage", ("comfyfarm.worker", "comfyfarm.producer"), why="a plain store"),
    *(
        Rule(f"comfyfarm.{part}", tuple(APP), why="the app uses the parts, never the reverse")
        for part in PARTS
    ),
]


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # what it imports
    where: str  # file:line


def _module_files() -> Iterator[tuple[str, Path]]:
    """(dotted module name, file) of every runtime source file, parts and app."""
    for part in PARTS:
        for path in sorted((ROOT / part).rglob("*.py")):
            yield _dotted(f"comfyfarm.{part}", path.relative_to(ROOT / part)), path
    for path in sorted(NAMESPACE.rglob("*.py")):
        relative = path.relative_to(NAMESPACE)
        if relative.parts[0] not in PARTS:
            yield _dotted("comfyfarm", relative), path


def _dotted(package: str, relative: Path) -> str:
    names = [*relative.parent.parts, relative.stem]
    if names[-1] == "__init__":
        names.pop()
    return ".".join([package, *names])


def _imports() -> Iterator[Import]:
    for module, path in _module_files():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield Import(module, alias.name, where)
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(module, is_package, node.module, node.level)
                for alias in node.names:
                    # ``from comfyfarm import tasks`` imports the part comfyfarm.tasks
                    target = f"{base}.{alias.name}" if base == "comfyfarm" else base
                    yield Import(module, target, where)


def _absolute(module: str, is_package: bool, name: str | None, level: int) -> str:
    if level == 0:
        return name or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[: len(package) - (level - 1)]
    return ".".join([*base, name] if name else base)


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_the_tree_has_the_parts_and_the_app() -> None:
    """The checks see every part and the app (a renamed folder cannot hide from them)."""
    assert {"tasks", "producer", "worker", "comfy", "storage", "workflows", "simulator"} <= set(
        PARTS
    )
    assert {"comfyfarm.cli", "comfyfarm.commands", "comfyfarm.demo", "comfyfarm.services"} <= set(
        APP
    )


def test_no_import_crosses_a_never() -> None:
    """No module imports what its layer must never import (offenders listed as file:line)."""
    offences = []
    for found in _imports():
        for rule in RULES:
            if not _under(found.module, rule.source):
                continue
            if any(_under(found.target, bad) for bad in rule.forbidden) and not any(
                _under(found.target, ok) for ok in rule.allowed
            ):
                offences.append(
                    f"{found.where}: {found.module} imports {found.target} ({rule.why})"
                )
    assert not offences, "layering broken:\n" + "\n".join(offences)
