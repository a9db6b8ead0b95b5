"""Splitting the farm's idle gaps at the worker's timestamps."""

from __future__ import annotations

import pytest
from comfyfarm_bench.phases import gap_phases
from comfyfarm_bench.timeline import Run


def test_phases_add_up_to_the_gap() -> None:
    """collect + hand-off + submit = next GPU start - previous GPU end, per pair."""
    runs = [[Run("a", 10.0, 11.0), Run("b", 11.1, 12.0)]]
    spans = {"a": (9.9, 11.02), "b": (11.05, 12.05)}
    phases = gap_phases(runs, spans)
    assert phases["collect"] == pytest.approx([0.02])
    assert phases["handoff"] == pytest.approx([0.03])
    assert phases["submit"] == pytest.approx([0.05])
    assert sum(values[0] for values in phases.values()) == pytest.approx(0.1)


def test_pairs_without_worker_timings_are_skipped() -> None:
    """A run the client has no JobResult for (e.g. native) contributes no phase sample."""
    runs = [[Run("a", 0.0, 1.0), Run("b", 1.1, 2.0), Run("c", 2.2, 3.0)]]
    phases = gap_phases(runs, {"b": (1.0, 2.05), "c": (2.1, 3.1)})
    assert [len(values) for values in phases.values()] == [1, 1, 1]
    assert phases["collect"] == pytest.approx([0.05])
