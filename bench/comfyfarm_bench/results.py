"""``comfyfarm bench results``: the README's results table, measured anew.

Runs the issue's standard set on this machine — 8 × 1 s (native, naive, farm), 8 × 0.25 s,
1 × 0 s serial (per-job overhead), 32 × 1 s (the workers' own CPU and memory on a small box),
``submit_many`` of 20,000 jobs, a 200 MB output — and renders one Markdown table with a line
saying where and when it was measured. ``--write README.md`` puts it between the markers
``<!-- bench-results:start -->`` and ``<!-- bench-results:end -->``; nothing else in the file
changes. Every figure in the table comes from this run.
"""

from __future__ import annotations

import datetime
import os
import platform
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

from comfyfarm_bench.enqueue import run_enqueue
from comfyfarm_bench.figures import ModeFigures
from comfyfarm_bench.outputs import OutputsFigures, run_outputs
from comfyfarm_bench.throughput import ThroughputOptions, run_throughput

START = "<!-- bench-results:start -->"
END = "<!-- bench-results:end -->"
HEADERS = ("run", "figure", "target", "farm idle gap p50 / p99", "notes")


@dataclass(frozen=True)
class Row:
    run: str
    figure: str
    target: str
    gap: str
    notes: str


@dataclass(frozen=True)
class Plan:
    """Sizes of the standard runs (``quick`` shrinks them for a smoke test)."""

    fleet_jobs: int = 160
    short_jobs: int = 320
    serial_jobs: int = 200
    large_instances: int = 32
    large_jobs: int = 256
    enqueue_jobs: int = 20_000
    output_mb: float = 200.0
    output_repeats: int = 5


QUICK = Plan(
    fleet_jobs=8, short_jobs=8, serial_jobs=10, large_instances=2, large_jobs=4,
    enqueue_jobs=200, output_mb=4.0, output_repeats=1,
)  # fmt: skip


def measure(plan: Plan, *, log: TextIO | None = None) -> list[Row]:
    """Run every benchmark of ``plan``, one after the other, and make the table's rows; progress
    goes to ``log`` (default: ``sys.stderr`` as it is when called, not as it was at import)."""
    log = sys.stderr if log is None else log
    steps: list[Callable[[], Row]] = [
        lambda: _fleet_row(plan, log),
        lambda: _short_row(plan, log),
        lambda: _serial_row(plan, log),
        lambda: _large_row(plan, log),
        lambda: _enqueue_row(plan),
        lambda: _outputs_row(plan, log),
    ]
    rows = []
    for step in steps:
        rows.append(step())
        print(f"results: {rows[-1].run}: {rows[-1].figure}", file=log)
    return rows


def render(rows: Sequence[Row], *, measured_on: str) -> str:
    """The Markdown block (table + where it was measured) that goes between the markers."""
    lines = [
        f"Measured {measured_on}; regenerate with `comfyfarm bench results --write README.md`.",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "---|" * len(HEADERS),
    ]
    for row in rows:
        cells = (row.run, row.figure, row.target, row.gap, row.notes)
        lines.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
    return "\n".join(lines)


def replace_section(text: str, block: str) -> str:
    """``text`` with everything between the markers replaced by ``block``; ValueError when the
    markers are missing or out of order."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < 0 or end < start:
        raise ValueError(f"the file needs the lines {START} and {END} (in that order)")
    return text[: start + len(START)] + "\n" + block + "\n" + text[end:]


def machine_line(now: datetime.date | None = None) -> str:
    """Date, cores, memory, CPU and Python of this machine, for the table's caption."""
    day = (now or datetime.date.today()).isoformat()
    cores = os.cpu_count() or 0
    memory = _memory_gib()
    cpu = _cpu_model() or platform.machine()
    python = platform.python_version()
    return f"{day} on {cores} cores, {memory} GiB, {cpu}, Python {python}, all on loopback"


# -- the rows --------------------------------------------------------------------------------
def _throughput(
    instances: int,
    job_ms: float,
    jobs: int,
    modes: tuple[str, ...],
    log: TextIO,
    *,
    serial: bool = False,
) -> dict[str, ModeFigures]:
    print(f"results: {instances} x {job_ms:g} ms, {jobs} jobs", file=log)
    options = ThroughputOptions(
        instances=instances, job_ms=job_ms, jobs=jobs, modes=modes, serial=serial
    )
    return {figures.mode: figures for figures in run_throughput(options, log=log)}


def _fleet_row(plan: Plan, log: TextIO) -> Row:
    runs = _throughput(8, 1000.0, plan.fleet_jobs, ("native", "naive", "farm"), log)
    return _ratio_row(runs, f"8 instances × 1 s, {plan.fleet_jobs} jobs", "≥ 0.99, gap p50 ≤ 5 ms")


def _short_row(plan: Plan, log: TextIO) -> Row:
    runs = _throughput(8, 250.0, plan.short_jobs, ("native", "farm"), log)
    return _ratio_row(runs, f"8 instances × 0.25 s, {plan.short_jobs} jobs", "≥ 0.95")


def _ratio_row(runs: dict[str, ModeFigures], run: str, target: str) -> Row:
    farm, naive = runs["farm"], runs.get("naive")
    return Row(
        run=run,
        figure=f"farm / native **{_ratio(farm)}**" + (f" (naive {_ratio(naive)})" if naive else ""),
        target=target,
        gap=_gap(farm),
        notes=f"GPU utilisation {_num(farm.gpu_utilisation, 3)}; {_balance(farm)}; {_cpu(farm)}",
    )


def _serial_row(plan: Plan, log: TextIO) -> Row:
    runs = _throughput(1, 0.0, plan.serial_jobs, ("native", "farm"), log, serial=True)
    farm, native = runs["farm"], runs["native"]
    overhead = None
    if farm.latency.p50_ms is not None and native.latency.p50_ms is not None:
        overhead = farm.latency.p50_ms - native.latency.p50_ms
    return Row(
        run=f"1 instance × 0 s, serial, {plan.serial_jobs} jobs",
        figure=f"overhead p50 **{_num(overhead, 1)} ms** above native",
        target="≤ 15 ms",
        gap=_gap(farm),
        notes=(
            f"end-to-end p50 {_num(farm.latency.p50_ms, 1)} ms vs native "
            f"{_num(native.latency.p50_ms, 1)} ms; one job in flight, so pipelining cannot help"
        ),
    )


def _large_row(plan: Plan, log: TextIO) -> Row:
    n = plan.large_instances
    runs = _throughput(n, 1000.0, plan.large_jobs, ("native", "farm"), log)
    farm = runs["farm"]
    memory = farm.extra.get("worker_memory") or {}
    idle, peak = memory.get("idle") or {}, memory.get("peak") or {}
    return Row(
        run=f"{n} instances × 1 s, {n} workers, {plan.large_jobs} jobs",
        figure=f"farm / native **{_ratio(farm)}**",
        target="≥ 0.9",
        gap=_gap(farm),
        notes=(
            f"{_cpu(farm)}; {idle.get('processes', '?')} worker processes, RSS "
            f"{_num(idle.get('rss_mb'), 0)} MB idle → {_num(peak.get('rss_mb'), 0)} MB under "
            f"load (PSS {_num(idle.get('pss_mb'), 0)} → {_num(peak.get('pss_mb'), 0)} MB)"
        ),
    )


def _enqueue_row(plan: Plan) -> Row:
    outcome = run_enqueue(plan.enqueue_jobs)
    return Row(
        run="`submit_many`",
        figure=f"**{outcome.rate:,.0f} jobs/s** enqueued",
        target="≥ 5,000 jobs/s",
        gap="",
        notes=f"{outcome.jobs:,} jobs of {outcome.prompt_bytes:,} B each",
    )


def _outputs_row(plan: Plan, log: TextIO) -> Row:
    figures: OutputsFigures = run_outputs(plan.output_mb, repeats=plan.output_repeats, log=log)
    return Row(
        run=f"{figures.size_mb:g} MB output → `file://`",
        figure=(
            f"**{figures.ratio:.2f}** of a plain loopback download with its BLAKE3 digest "
            f"({figures.farm_mb_s:,.0f} vs {figures.plain_mb_s:,.0f} MB/s); "
            f"{figures.ratio_sha256:.2f} with SHA-256, {figures.ratio_no_digest:.2f} with "
            f"`?digest=none`"
        ),
        target="≥ 0.8, RSS growth ≤ 50 MB",
        gap="",
        notes=(
            f"RSS growth {figures.farm_rss_growth_mb:.1f} MB; the farm path also fsyncs (plain + "
            f"fsync: {figures.plain_fsync_mb_s:,.0f} MB/s) and hashes in a helper thread"
        ),
    )


# -- formatting helpers ------------------------------------------------------------------------
def _num(value: float | int | None, digits: int) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _ratio(figures: ModeFigures) -> str:
    return _num(figures.ratio_to_native, 3)


def _gap(figures: ModeFigures) -> str:
    return f"{_num(figures.idle_gap.p50_ms, 1)} / {_num(figures.idle_gap.p99_ms, 1)} ms"


def _balance(figures: ModeFigures) -> str:
    spread = figures.extra.get("balance") or {}
    counts = spread.get("jobs_per_instance") or [0]
    return (
        f"{min(counts)}–{max(counts)} jobs per instance, idle tail max "
        f"{_num(spread.get('tail_max_s'), 2)} s"
    )


def _cpu(figures: ModeFigures) -> str:
    cpu = figures.extra.get("cpu") or {}
    busy = cpu.get("machine_busy")
    return "CPU -" if busy is None else f"machine CPU {busy:.0%} busy"


def _memory_gib() -> str:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            kib = int(handle.readline().split()[1])
    except (OSError, ValueError, IndexError):
        return "?"
    return f"{kib / 2**20:.0f}"


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None
