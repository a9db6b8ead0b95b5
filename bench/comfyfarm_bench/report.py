"""Printing benchmark figures: an aligned table for people, one JSON object per line for tools."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from comfyfarm_bench.figures import ModeFigures

THROUGHPUT_HEADERS = (
    "mode", "jobs", "failed", "wall s", "jobs/s", "GPU util", "gap p50 ms", "gap p99 ms",
    "lat p50 ms", "lat p99 ms", "vs native",
)  # fmt: skip


def cell(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def format_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Columns right-aligned except the first, two spaces apart."""
    table = [list(headers), *[list(row) for row in rows]]
    widths = [max(len(row[col]) for row in table) for col in range(len(headers))]
    lines = []
    for row in table:
        cells = [row[0].ljust(widths[0])]
        cells += [text.rjust(width) for text, width in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def throughput_table(figures: Sequence[ModeFigures]) -> str:
    rows = [
        (
            f.mode,
            cell(f.jobs),
            cell(f.failed),
            cell(f.wall_seconds, 2),
            cell(f.throughput, 3),
            cell(f.gpu_utilisation, 4),
            cell(f.idle_gap.p50_ms),
            cell(f.idle_gap.p99_ms),
            cell(f.latency.p50_ms),
            cell(f.latency.p99_ms),
            cell(f.ratio_to_native, 4),
        )
        for f in figures
    ]
    lines = [format_table(THROUGHPUT_HEADERS, rows)]
    for f in figures:
        cpu = f.extra.get("cpu")
        if cpu and cpu.get("machine_busy") is not None:
            lines.append(
                f"{f.mode}: CPU: machine {cpu['machine_busy']:.0%} busy of {cpu['cores']} cores, "
                f"this client process {cpu['client_seconds']:.1f} s"
            )
        memory = f.extra.get("worker_memory")
        if memory:
            idle, peak = memory["idle"], memory["peak"]
            lines.append(
                f"{f.mode}: {idle['processes']} worker processes, RSS idle {idle['rss_mb']:.0f} MB"
                f" → peak {peak['rss_mb']:.0f} MB (PSS {cell(idle['pss_mb'], 0)} → "
                f"{cell(peak['pss_mb'], 0)} MB)"
            )
        run_ms = f.extra.get("worker_run_ms")
        if run_ms and run_ms.get("count"):
            lines.append(
                f"{f.mode}: worker time per job (run_job start → result built) "
                f"p50 {cell(run_ms['p50'])} ms, p99 {cell(run_ms['p99'])} ms"
            )
        spread = f.extra.get("balance")
        if spread:
            lines.append(
                f"{f.mode}: jobs per instance {min(spread['jobs_per_instance'], default=0)}.."
                f"{max(spread['jobs_per_instance'], default=0)}, tail idle mean "
                f"{spread['tail_mean_s']:.3f} s, max {spread['tail_max_s']:.3f} s"
            )
        phases = f.extra.get("gap_phases_ms")
        if phases:
            parts = ", ".join(
                f"{name} {cell(spread['p50'])}/{cell(spread['p99'])}"
                for name, spread in phases.items()
            )
            lines.append(f"{f.mode}: idle gap split, p50/p99 ms: {parts}")
        for error in f.errors:
            lines.append(f"{f.mode}: error: {error}")
    return "\n".join(lines)


def print_json_lines(objects: Iterable[dict[str, Any]], out: TextIO) -> None:
    for obj in objects:
        out.write(json.dumps(obj, sort_keys=False) + "\n")
    out.flush()
