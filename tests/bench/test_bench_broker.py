"""`comfyfarm bench broker`: the broker's cost per job, read from a real Valkey's counters."""

from __future__ import annotations

from pathlib import Path

from comfyfarm_bench.broker import run_broker_cost


def test_broker_cost_counts_commands_bytes_and_cpu_per_job(tmp_path: Path) -> None:
    """A small real run: every job finishes; commands, bytes and CPU per job are positive and the
    ceiling is one core's worth of that CPU."""
    cost = run_broker_cost(jobs=10, instances=1, job_ms=5, idle_seconds=0.5, workdir=tmp_path)
    assert cost.jobs == 10
    assert cost.commands_per_job > 0 and cost.bytes_in_per_job > 0 and cost.cpu_ms_per_job > 0
    assert "publish" in cost.top_commands_per_job
    assert abs(cost.ceiling_jobs_per_second - 1000 / cost.cpu_ms_per_job) < 1
