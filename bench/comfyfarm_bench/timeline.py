"""Figures from the simulators' busy timelines: idle gaps, GPU utilisation, percentiles.

Pure functions over ``GET /_sim/stats`` timeline entries (``{"prompt_id", "start", "end", ...}``,
``time.time()`` seconds), one list per simulated GPU. No I/O here.

Definitions (used in every report):

- **idle gap**: on one instance, ``start(k+1) - end(k)`` for consecutive runs ``k, k+1`` ordered
  by start. Gaps of all instances are pooled; an instance with n runs gives n-1 gaps.
- **window**: from the earliest ``start`` to the latest ``end`` over *all* instances of the run.
  Time before the first prompt starts (submitting, worker pick-up) is outside it; wall time and
  throughput account for that.
- **GPU utilisation**: ``sum of busy seconds / (instances * window)``, busy time clipped to the
  window. Instances that ran nothing count as idle for the whole window, so 1.0 means every GPU
  was busy from the first start to the last end.
- **percentile**: nearest-rank: the smallest sample such that at least p % of the samples are
  less than or equal to it (``sorted[ceil(p/100 * n) - 1]``); no interpolation, so every
  reported value was observed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Run:
    """One prompt run on one simulated GPU."""

    prompt_id: str
    start: float
    end: float
    cached: bool = False

    @property
    def seconds(self) -> float:
        return max(0.0, self.end - self.start)

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> Run:
        """A run from one ``/_sim/stats`` timeline entry."""
        return cls(
            prompt_id=str(entry["prompt_id"]),
            start=float(entry["start"]),
            end=float(entry["end"]),
            cached=bool(entry.get("cached", False)),
        )


def runs_from_stats(stats: Mapping[str, Any]) -> list[Run]:
    """The runs of one ``/_sim/stats`` answer, ordered by start."""
    return sorted((Run.from_entry(entry) for entry in stats.get("timeline", [])), key=_start)


def _start(run: Run) -> float:
    return run.start


def percentile(samples: Iterable[float], p: float) -> float | None:
    """Nearest-rank percentile (see the module docstring); None for no samples."""
    if not 0 < p <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {p}")
    ordered = sorted(samples)
    if not ordered:
        return None
    rank = math.ceil(p / 100 * len(ordered))
    return ordered[max(rank, 1) - 1]


def idle_gaps(instance_runs: Sequence[Run]) -> list[float]:
    """Seconds between the end of each run and the start of the next on one instance.

    Negative values (overlapping runs) cannot happen on one GPU; they are kept as measured so a
    broken timeline shows up instead of being hidden.
    """
    ordered = sorted(instance_runs, key=_start)
    return [after.start - before.end for before, after in zip(ordered, ordered[1:], strict=False)]


def pooled_gaps(fleet_runs: Sequence[Sequence[Run]]) -> list[float]:
    """Idle gaps of every instance, pooled."""
    return [gap for runs in fleet_runs for gap in idle_gaps(runs)]


def window(fleet_runs: Sequence[Sequence[Run]]) -> tuple[float, float] | None:
    """(earliest start, latest end) over all instances; None when nothing ran."""
    runs = [run for instance in fleet_runs for run in instance]
    if not runs:
        return None
    return min(run.start for run in runs), max(run.end for run in runs)


def utilisation(fleet_runs: Sequence[Sequence[Run]]) -> float | None:
    """Busy seconds / (instances x window); None when nothing ran or the window is empty."""
    span = window(fleet_runs)
    if span is None or span[1] <= span[0] or not fleet_runs:
        return None
    first, last = span
    busy = sum(
        max(0.0, min(run.end, last) - max(run.start, first))
        for instance in fleet_runs
        for run in instance
    )
    return busy / (len(fleet_runs) * (last - first))


def balance(fleet_runs: Sequence[Sequence[Run]]) -> dict[str, Any]:
    """How evenly the jobs spread: executed jobs per instance, their max - min, and the tail —
    seconds each instance stood idle between its own last job and the fleet's last job (mean and
    max). A farm that hoards (a worker holding queued jobs while other instances idle) shows it
    as a long tail."""
    span = window(fleet_runs)
    counts = [sum(1 for run in runs if not run.cached) for runs in fleet_runs]
    if span is None or not fleet_runs:
        return {"jobs_per_instance": counts, "imbalance": 0, "tail_mean_s": 0.0, "tail_max_s": 0.0}
    last = span[1]
    tails = [last - max((run.end for run in runs), default=span[0]) for runs in fleet_runs]
    return {
        "jobs_per_instance": counts,
        "imbalance": max(counts) - min(counts),
        "tail_mean_s": round(sum(tails) / len(tails), 4),
        "tail_max_s": round(max(tails), 4),
    }


@dataclass(frozen=True)
class Spread:
    """p50 and p99 of a set of samples, in milliseconds (None when there were none)."""

    p50_ms: float | None
    p99_ms: float | None
    count: int

    @classmethod
    def of_seconds(cls, samples: Sequence[float]) -> Spread:
        p50, p99 = percentile(samples, 50), percentile(samples, 99)
        return cls(
            p50_ms=None if p50 is None else p50 * 1000,
            p99_ms=None if p99 is None else p99 * 1000,
            count=len(samples),
        )

    def to_dict(self) -> dict[str, float | int | None]:
        return {"p50": _round(self.p50_ms), "p99": _round(self.p99_ms), "count": self.count}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
