"""Figures and report of a mode, from a hand-made record and timeline (no processes)."""

from __future__ import annotations

import pytest
from comfyfarm_bench.figures import figures_of
from comfyfarm_bench.record import JobTiming, ModeRun
from comfyfarm_bench.report import format_table, throughput_table
from comfyfarm_bench.throughput import parse_modes
from comfyfarm_bench.timeline import Run


def record(mode: str, latencies: list[float], requested: int) -> ModeRun:
    rec = ModeRun(mode, started_at=100.0, requested=requested)
    for index, latency in enumerate(latencies):
        rec.add(JobTiming(f"j{index}", 100.0, done_at=100.0 + latency, ok=True))
    rec.close()
    return rec


def test_throughput_is_jobs_over_wall_and_ratio_is_against_native() -> None:
    """jobs / (last result - start); the ratio divides by the native throughput given."""
    fleet = [[Run("a", 100.1, 101.1), Run("b", 101.1, 102.1)], [Run("c", 100.1, 102.1)]]
    figures = figures_of(
        record("farm", [1.5, 2.5, 4.0], 4), fleet, job_ms=1000, native_throughput=1.5
    )
    assert figures.jobs == 3 and figures.failed == 1
    assert figures.wall_seconds == pytest.approx(4.0)
    assert figures.throughput == pytest.approx(0.75)
    assert figures.ratio_to_native == pytest.approx(0.5)
    assert figures.gpu_utilisation == pytest.approx(1.0)
    assert figures.latency.p50_ms == pytest.approx(2500)


def test_native_has_no_ratio_and_json_has_every_field() -> None:
    """Native gets no ratio; to_dict carries the documented keys."""
    figures = figures_of(record("native", [1.0], 1), [[Run("a", 100.0, 101.0)]], job_ms=1000)
    data = figures.to_dict()
    assert data["ratio_to_native"] is None
    for key in (
        "jobs",
        "wall_seconds",
        "throughput",
        "gpu_utilisation",
        "idle_gap_ms",
        "latency_ms",
        "executions",
        "cached_runs",
    ):
        assert key in data


def test_table_aligns_columns_and_shows_missing_values_as_dash() -> None:
    """Rows line up under the headers; None prints as '-'."""
    figures = figures_of(record("native", [1.0], 1), [[Run("a", 100.0, 101.0)]], job_ms=1000)
    table = throughput_table([figures]).splitlines()
    assert table[0].startswith("mode") and table[1].startswith("native")
    assert table[1].rstrip().endswith("-")
    assert format_table(["a", "bb"], [["x", "1"]]) == "a  bb\nx   1"


def test_modes_run_in_canonical_order_and_unknown_ones_are_refused() -> None:
    """--modes farm,native runs native first (the ratio's reference); typos are errors."""
    assert parse_modes("farm, native") == ("native", "farm")
    with pytest.raises(ValueError, match="fram"):
        parse_modes("fram")
    with pytest.raises(ValueError):
        parse_modes(",")
