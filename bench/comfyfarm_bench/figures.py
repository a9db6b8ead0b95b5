"""The figures of one mode: client-side record + simulator timelines → numbers for the report.

- ``jobs``: jobs whose result reached the client; ``failed``: requested minus that.
- ``wall_seconds``: from the mode handing in its first job to the last result available to the
  client; ``throughput`` = jobs / wall seconds.
- ``gpu_utilisation``, ``idle_gap_ms``: from the timelines (see ``comfyfarm_bench.timeline``).
- ``latency_ms``: per job, result available − handed in (see each mode's docstring).
- ``ratio_to_native``: throughput / the native throughput of the same run (None for native, or
  when native did not run).
- ``gap_phases_ms`` (farm): the idle gaps split into collect / hand-off / submit
  (``comfyfarm_bench.phases``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from comfyfarm_bench.phases import gap_phases
from comfyfarm_bench.record import ModeRun
from comfyfarm_bench.timeline import Run, Spread, balance, pooled_gaps, utilisation, window


@dataclass(frozen=True)
class ModeFigures:
    mode: str
    instances: int
    job_ms: float
    jobs: int
    failed: int
    wall_seconds: float
    throughput: float
    gpu_utilisation: float | None
    gpu_window_seconds: float | None
    idle_gap: Spread
    latency: Spread
    executions: int
    cached_runs: int
    ratio_to_native: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "bench": "throughput",
            "mode": self.mode,
            "instances": self.instances,
            "job_ms": self.job_ms,
            "jobs": self.jobs,
            "failed": self.failed,
            "wall_seconds": round(self.wall_seconds, 4),
            "throughput": round(self.throughput, 4),
            "gpu_utilisation": _round(self.gpu_utilisation, 4),
            "gpu_window_seconds": _round(self.gpu_window_seconds, 4),
            "idle_gap_ms": self.idle_gap.to_dict(),
            "latency_ms": self.latency.to_dict(),
            "executions": self.executions,
            "cached_runs": self.cached_runs,
            "ratio_to_native": _round(self.ratio_to_native, 4),
            **self.extra,
            "errors": self.errors,
        }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def figures_of(
    record: ModeRun,
    fleet_runs: Sequence[Sequence[Run]],
    *,
    job_ms: float,
    native_throughput: float | None = None,
) -> ModeFigures:
    """Figures of one mode; ``fleet_runs`` are the simulators' runs since the mode began."""
    done = record.done
    wall = record.wall_seconds
    throughput = len(done) / wall if wall > 0 else 0.0
    span = window(fleet_runs)
    ratio = None
    if record.mode != "native" and native_throughput:
        ratio = throughput / native_throughput
    extra = dict(record.extra)
    extra["balance"] = balance(fleet_runs)
    spans = {job.job_id: job.worker_span for job in done if job.worker_span is not None}
    if spans:
        phases = gap_phases(fleet_runs, spans)
        extra["gap_phases_ms"] = {
            name: Spread.of_seconds(values).to_dict() for name, values in phases.items()
        }
    return ModeFigures(
        mode=record.mode,
        instances=len(fleet_runs),
        job_ms=job_ms,
        jobs=len(done),
        failed=record.failed,
        wall_seconds=wall,
        throughput=throughput,
        gpu_utilisation=utilisation(fleet_runs),
        gpu_window_seconds=None if span is None else span[1] - span[0],
        idle_gap=Spread.of_seconds(pooled_gaps(fleet_runs)),
        latency=Spread.of_seconds([job.latency for job in done if job.latency is not None]),
        executions=sum(1 for runs in fleet_runs for run in runs if not run.cached),
        cached_runs=sum(1 for runs in fleet_runs for run in runs if run.cached),
        ratio_to_native=ratio,
        extra=extra,
        errors=sorted({job.error for job in record.jobs if job.error})[:5],
    )
