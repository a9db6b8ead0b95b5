"""Where an idle gap goes, for the farm: each gap on a simulator split at the worker's own
timestamps (pure function; joins the timeline with the JobResult timings by prompt id = job id).

For consecutive jobs k, k+1 on one instance (one worker per instance)::

    GPU end(k) ─ collect ─> result built(k) ─ hand-off ─> run_job(k+1) ─ submit ─> GPU start(k+1)

- **collect**: the end event reaching the worker, history, outputs streamed into the store;
- **hand-off**: result.json written, Celery stores the result and sends events, acks, and the
  pool hands the worker process its next message, which starts ``run_job``;
- **submit**: WebSocket connect, lookup, upload, ``POST /prompt``, until the GPU starts.

The three add up to the idle gap. A pair is skipped when either job has no worker timings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from comfyfarm_bench.timeline import Run

PHASES = ("collect", "handoff", "submit")


def gap_phases(
    fleet_runs: Sequence[Sequence[Run]], worker_spans: Mapping[str, tuple[float, float]]
) -> dict[str, list[float]]:
    """Seconds of each phase for every consecutive pair of runs with known worker spans.

    ``worker_spans``: job id → (run_job started, result built), ``time.time()`` seconds.
    """
    phases: dict[str, list[float]] = {name: [] for name in PHASES}
    for runs in fleet_runs:
        ordered = sorted(runs, key=lambda run: run.start)
        for before, after in zip(ordered, ordered[1:], strict=False):
            first = worker_spans.get(before.prompt_id)
            second = worker_spans.get(after.prompt_id)
            if first is None or second is None:
                continue
            phases["collect"].append(first[1] - before.end)
            phases["handoff"].append(second[0] - first[1])
            phases["submit"].append(after.start - second[0])
    return phases
