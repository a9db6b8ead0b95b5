"""Sweeps: ``--sweep NAME=VALUES`` expanded into one setting per job.

VALUES is one of

- ``a,b,c``       a list (each item parsed as JSON when it parses: ``1,2,3`` are numbers)
- ``1..8``        an inclusive integer range; ``1..20:2`` with a step; ``0.5..1:0.25`` floats
- ``@FILE``       one value per line of a text file (blank lines skipped; lines are kept as text)
- ``[...]``       a JSON array

NAME is a parameter name or a ``--set`` address. Several sweeps combine as a cartesian product
(the first sweep varies slowest), or pairwise with ``zip`` (all lists must be equally long).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from comfyfarm.workflows.errors import ParameterError
from comfyfarm.workflows.overrides import Setting, parse_value, split_assignment
from comfyfarm.workflows.problems import general

MAX_JOBS = 100_000  # a typo like 1..10000000 should fail, not fill the broker
_RANGE = re.compile(r"^\s*(-?[\d.]+)\s*\.\.\s*(-?[\d.]+)\s*(?::\s*(-?[\d.]+)\s*)?$")


@dataclass(frozen=True)
class Sweep:
    """One swept name and its values, in order."""

    key: str
    values: tuple[Setting, ...]


def parse_sweep(text: str, *, base_dir: Path | None = None) -> Sweep:
    """Read one ``--sweep NAME=VALUES``; raises ParameterError."""
    key, spec = split_assignment(text, flag="--sweep")
    values = [
        Setting(key=key, value=value, raw=raw, origin="sweep")
        for value, raw in _values(key, spec, base_dir or Path.cwd())
    ]
    if not values:
        raise _bad(f"--sweep {key}: no values in {spec!r}")
    return Sweep(key=key, values=tuple(values))


def expand(sweeps: Sequence[Sweep], *, zip_sweeps: bool = False) -> list[list[Setting]]:
    """The settings of each job: the product (default) or the zip of the sweeps."""
    if not sweeps:
        return [[]]
    keys = [sweep.key for sweep in sweeps]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise _bad(f"swept more than once: {', '.join(repeated)}")
    if zip_sweeps:
        lengths = {sweep.key: len(sweep.values) for sweep in sweeps}
        if len(set(lengths.values())) > 1:
            sizes = ", ".join(f"{k}: {n}" for k, n in lengths.items())
            raise _bad(f"zipped sweeps must have the same number of values ({sizes})")
        return [list(values) for values in zip(*(s.values for s in sweeps), strict=True)]
    total = 1
    for sweep in sweeps:
        total *= len(sweep.values)
    if total > MAX_JOBS:
        raise _bad(f"the sweeps make {total} jobs, more than {MAX_JOBS}")
    return [list(values) for values in itertools.product(*(s.values for s in sweeps))]


def _values(key: str, spec: str, base_dir: Path) -> list[tuple[object, str]]:
    stripped = spec.strip()
    if stripped.startswith("@"):
        return _file_values(key, stripped[1:], base_dir)
    if stripped.startswith("["):
        try:
            items = json.loads(stripped)
        except ValueError as exc:
            raise _bad(f"--sweep {key}: {spec!r} is not a JSON array ({exc})") from exc
        if isinstance(items, list):
            return [(item, item if isinstance(item, str) else json.dumps(item)) for item in items]
    match = _RANGE.match(stripped)
    if match:
        return _range_values(key, *match.groups())
    return [(parse_value(item), item) for item in spec.split(",")]


def _file_values(key: str, name: str, base_dir: Path) -> list[tuple[object, str]]:
    path = Path(name).expanduser()
    if not path.is_absolute():
        path = base_dir / path
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise _bad(f"--sweep {key}=@{name}: cannot read {path} ({exc.strerror})") from exc
    return [(line, line) for line in text.splitlines() if line.strip()]


def _range_values(key: str, start: str, stop: str, step: str | None) -> list[tuple[object, str]]:
    try:
        first, last = Decimal(start), Decimal(stop)
        increment = Decimal(step) if step is not None else Decimal(1)
    except InvalidOperation as exc:
        raise _bad(f"--sweep {key}: {start}..{stop} is not a range of numbers") from exc
    if increment == 0 or (last - first) * increment < 0:
        raise _bad(f"--sweep {key}: the step {increment} never gets from {first} to {last}")
    count = int((last - first) / increment) + 1
    if count > MAX_JOBS:
        raise _bad(f"--sweep {key}: {count} values, more than {MAX_JOBS}")
    integral = all(part.as_tuple().exponent == 0 for part in (first, last, increment))
    values: list[tuple[object, str]] = []
    for index in range(count):
        number = first + increment * index
        value: object = int(number) if integral else float(number)
        values.append((value, str(number)))
    return values


def _bad(message: str) -> ParameterError:
    return ParameterError(
        problems=[general("bad_sweep", message, "e.g. --sweep seed=1..8 or --sweep steps=20,30")]
    )
