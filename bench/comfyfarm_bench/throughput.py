"""``comfyfarm bench throughput``: native vs naive vs farm, side by side on one simulated fleet.

One fleet of ``instances`` simulators (``--job-ms`` fixed GPU time per prompt) serves every mode
in turn (always in the order native, naive, farm, so the farm's ratio has its reference). Before
each mode the simulators' accounting is reset and fresh prompts (new seeds) are drawn, so no job
is served from ComfyUI's cache and each mode's timeline holds only its own runs.

With ``comfy_urls`` the same comparison runs on those servers instead (real ComfyUIs on GPUs,
see ``comfyfarm_bench.remote``): nothing is started, jobs come from ``workflow`` with
``params``/``sets``, busy time from each prompt's history, and ``job_ms`` in the figures is the
measured mean busy time of the mode's executed prompts.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from comfyfarm.workflows import PreparedJob
from comfyfarm_bench.farm import run_farm
from comfyfarm_bench.figures import ModeFigures, figures_of
from comfyfarm_bench.fleet import Fleet
from comfyfarm_bench.naive import run_naive
from comfyfarm_bench.native import run_native
from comfyfarm_bench.prompts import fresh_jobs
from comfyfarm_bench.record import ModeRun
from comfyfarm_bench.remote import RemoteFleet, mean_busy_ms, workflow_jobs

MODES = ("native", "naive", "farm")


@dataclass(frozen=True)
class ThroughputOptions:
    instances: int = 8
    job_ms: float = 1000.0
    jobs: int = 64
    modes: tuple[str, ...] = MODES
    serial: bool = False
    timeout: float = 900.0
    comfy_urls: tuple[str, ...] = ()
    workflow: str | None = None
    params: tuple[str, ...] = ()
    sets: tuple[str, ...] = ()


def parse_modes(text: str) -> tuple[str, ...]:
    """``"farm,native"`` → ``("native", "farm")`` (run order); ValueError names unknown modes."""
    asked = {word.strip() for word in text.split(",") if word.strip()}
    unknown = sorted(asked - set(MODES))
    if unknown or not asked:
        raise ValueError(f"unknown mode(s) {', '.join(unknown) or '(none)'}; use {','.join(MODES)}")
    return tuple(mode for mode in MODES if mode in asked)


ModeRunner = Callable[[list[str], list[PreparedJob], Path, ThroughputOptions], ModeRun]


def _native(urls: list[str], jobs: list[PreparedJob], _: Path, o: ThroughputOptions) -> ModeRun:
    return run_native(urls, jobs, serial=o.serial, timeout=o.timeout)


def _naive(urls: list[str], jobs: list[PreparedJob], tmp: Path, o: ThroughputOptions) -> ModeRun:
    return run_naive(urls, jobs, tmp / "naive", serial=o.serial, timeout=o.timeout)


def _farm(urls: list[str], jobs: list[PreparedJob], tmp: Path, o: ThroughputOptions) -> ModeRun:
    return run_farm(urls, jobs, tmp / "farm", serial=o.serial, timeout=o.timeout)


RUNNERS: dict[str, ModeRunner] = {"native": _native, "naive": _naive, "farm": _farm}


def run_throughput(options: ThroughputOptions, *, log: TextIO | None = None) -> list[ModeFigures]:
    """Start the fleet, run each mode, stop the fleet; figures in run order.

    ``log`` (progress lines) is looked up when called, default ``sys.stderr``: a default bound at
    import would keep a stream that may be closed by then (a test's captured stderr)."""
    log = log or sys.stderr
    if options.comfy_urls:
        return run_remote_throughput(options, log=log)
    results: list[ModeFigures] = []
    native_throughput: float | None = None
    with tempfile.TemporaryDirectory(prefix="comfyfarm-bench-") as tmp_name:
        tmp = Path(tmp_name)
        print(f"starting {options.instances} simulator(s), {options.job_ms:g} ms/job", file=log)
        with Fleet(options.instances, options.job_ms, root=tmp / "sims") as fleet:
            for mode in options.modes:
                fleet.reset_stats()
                jobs = fresh_jobs(options.jobs)
                print(f"{mode}: {len(jobs)} jobs", file=log)
                record = RUNNERS[mode](fleet.urls, jobs, tmp, options)
                figures = figures_of(
                    record, fleet.runs(), job_ms=options.job_ms, native_throughput=native_throughput
                )
                if mode == "native":
                    native_throughput = figures.throughput
                results.append(figures)
    return results


def run_remote_throughput(
    options: ThroughputOptions, *, log: TextIO | None = None
) -> list[ModeFigures]:
    """Each mode on the ComfyUI servers of ``options.comfy_urls``; figures in run order."""
    log = log or sys.stderr
    results: list[ModeFigures] = []
    native_throughput: float | None = None
    fleet = RemoteFleet(options.comfy_urls)
    try:
        with tempfile.TemporaryDirectory(prefix="comfyfarm-bench-") as tmp_name:
            tmp = Path(tmp_name)
            print(f"using {len(fleet)} ComfyUI server(s): {', '.join(fleet.urls)}", file=log)
            for mode in options.modes:
                jobs = workflow_jobs(
                    options.workflow,
                    options.jobs,
                    schema_url=fleet.urls[0],
                    params=options.params,
                    sets=options.sets,
                    log=log,
                )
                print(f"{mode}: {len(jobs)} jobs", file=log)
                record = RUNNERS[mode](fleet.urls, jobs, tmp, options)
                runs = fleet.runs_for(job.job_id for job in record.jobs)
                figures = figures_of(
                    record, runs, job_ms=mean_busy_ms(runs), native_throughput=native_throughput
                )
                if mode == "native":
                    native_throughput = figures.throughput
                results.append(figures)
    finally:
        fleet.close()
    return results
