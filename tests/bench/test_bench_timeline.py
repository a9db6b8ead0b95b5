"""The timeline math: idle gaps, window, utilisation and nearest-rank percentiles."""

from __future__ import annotations

import pytest
from comfyfarm_bench.timeline import (
    Run,
    Spread,
    idle_gaps,
    percentile,
    pooled_gaps,
    runs_from_stats,
    utilisation,
    window,
)


def run(start: float, end: float, name: str = "p") -> Run:
    return Run(prompt_id=name, start=start, end=end)


def test_gaps_are_next_start_minus_previous_end_in_start_order() -> None:
    """Gaps are measured between consecutive runs ordered by start, whatever the input order."""
    runs = [run(10.0, 11.0), run(0.0, 1.0), run(1.5, 9.0)]
    assert idle_gaps(runs) == pytest.approx([0.5, 1.0])


def test_one_run_has_no_gap() -> None:
    """An instance that ran once (or never) contributes no gap."""
    assert idle_gaps([run(0.0, 1.0)]) == []
    assert idle_gaps([]) == []


def test_gaps_are_pooled_over_instances_not_across_them() -> None:
    """Gaps never span two instances: each instance gives n-1 gaps."""
    fleet = [[run(0.0, 1.0), run(1.25, 2.0)], [run(5.0, 6.0), run(6.0, 7.0), run(7.5, 8.0)]]
    assert sorted(pooled_gaps(fleet)) == pytest.approx([0.0, 0.25, 0.5])


def test_window_spans_first_start_to_last_end_over_the_fleet() -> None:
    """The window starts at the earliest start and ends at the latest end of any instance."""
    fleet = [[run(2.0, 3.0)], [run(1.0, 1.5), run(4.0, 6.0)]]
    assert window(fleet) == (1.0, 6.0)
    assert window([[], []]) is None


def test_utilisation_of_back_to_back_runs_is_one() -> None:
    """Every GPU busy from the first start to the last end is a utilisation of exactly 1."""
    fleet = [[run(0.0, 1.0), run(1.0, 2.0)], [run(0.0, 2.0)]]
    assert utilisation(fleet) == pytest.approx(1.0)


def test_utilisation_counts_gaps_and_idle_instances() -> None:
    """Busy 3 s of 2 instances x 2 s window = 0.75; an instance that ran nothing is idle."""
    fleet = [[run(0.0, 1.0), run(1.5, 2.0)], [run(0.5, 2.0)]]
    assert utilisation(fleet) == pytest.approx(3.0 / 4.0)
    assert utilisation([[run(0.0, 2.0)], []]) == pytest.approx(0.5)


def test_utilisation_of_nothing_is_none() -> None:
    """No runs, or runs of zero length, give no utilisation rather than a division by zero."""
    assert utilisation([[]]) is None
    assert utilisation([[run(1.0, 1.0)]]) is None


def test_percentile_is_nearest_rank() -> None:
    """p-th percentile = sorted[ceil(p/100 * n) - 1]: an observed value, never interpolated."""
    samples = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert percentile(samples, 50) == 3.0
    assert percentile(samples, 99) == 5.0
    assert percentile(samples, 20) == 1.0
    assert percentile(samples, 21) == 2.0
    assert percentile(range(1, 101), 99) == 99
    assert percentile([7.0], 50) == 7.0


def test_percentile_of_no_samples_is_none_and_bad_p_is_refused() -> None:
    """Empty input gives None; p outside (0, 100] raises ValueError."""
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile([1.0], 0)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_spread_reports_milliseconds() -> None:
    """Spread converts second samples to p50/p99 milliseconds with the sample count."""
    spread = Spread.of_seconds([0.001, 0.002, 0.010])
    assert spread.to_dict() == {"p50": 2.0, "p99": 10.0, "count": 3}
    assert Spread.of_seconds([]).to_dict() == {"p50": None, "p99": None, "count": 0}


def test_runs_are_read_from_sim_stats_in_start_order() -> None:
    """A /_sim/stats answer becomes Runs ordered by start, with the cached flag kept."""
    stats = {
        "timeline": [
            {"prompt_id": "b", "start": 2.0, "end": 3.0, "status": "success", "cached": True},
            {"prompt_id": "a", "start": 0.0, "end": 1.0, "status": "success"},
        ]
    }
    runs = runs_from_stats(stats)
    assert [r.prompt_id for r in runs] == ["a", "b"]
    assert runs[1].cached and not runs[0].cached
    assert runs_from_stats({}) == []


def test_balance_counts_jobs_per_instance_and_the_idle_tail() -> None:
    """balance() gives executed jobs per instance, their spread, and each instance's idle tail."""
    from comfyfarm_bench.timeline import balance

    fleet = [
        [Run("a", 0.0, 1.0), Run("b", 1.0, 2.0), Run("c", 2.0, 3.0)],
        [Run("d", 0.0, 1.0), Run("e", 1.0, 2.0)],
    ]
    figures = balance(fleet)
    assert figures["jobs_per_instance"] == [3, 2]
    assert figures["imbalance"] == 1
    assert figures["tail_max_s"] == 1.0 and figures["tail_mean_s"] == 0.5
