"""The soak (``comfyfarm bench soak``): a short run with every fault kind, and its execution ledger.

The short run is the command a person runs, with fewer jobs: 200 jobs on 3 simulators whose
prompts crash, hang or drop their sockets at 3 % per kind, plus a worker SIGKILLed every 12 s.
"""

from __future__ import annotations

import json
import subprocess
import sys

from comfyfarm_bench.soak_ledger import ExecutionLedger


def _run(
    prompt_id: str, start: float, status: str = "success", nodes: int = 3
) -> dict[str, object]:
    return {"prompt_id": prompt_id, "start": start, "end": start + 0.02, "status": status,
            "nodes_executed": nodes}  # fmt: skip


def test_second_completion_on_a_live_incarnation_is_a_duplicate() -> None:
    """A prompt completed twice while the first simulator still ran counts as one duplicate."""
    ledger = ExecutionLedger()
    ledger.observe((0, 0), {"timeline": [_run("a", 1.0)]})
    ledger.observe((1, 0), {"timeline": [_run("a", 5.0), _run("b", 6.0)]})
    counted = ledger.analyse()
    assert (counted.duplicate_executions, counted.duplicates) == (1, [("a", 1)])
    assert counted.completed == 3


def test_rerun_after_the_simulator_died_is_not_a_duplicate() -> None:
    """A completion whose simulator died before the next run started makes that run legitimate."""
    ledger = ExecutionLedger()
    ledger.observe((0, 0), {"timeline": [_run("a", 1.0)]})
    ledger.end((0, 0), 2.0)
    ledger.observe((0, 1), {"timeline": [_run("a", 5.0)]})
    counted = ledger.analyse()
    assert (counted.duplicate_executions, counted.reexecuted_after_loss) == (0, 1)
    assert counted.completed_by_prompt == {"a": 1}


def test_aborted_runs_before_a_completion_are_not_duplicates() -> None:
    """An interrupted run followed by a completed one is not a duplicate; a cached run is apart."""
    ledger = ExecutionLedger()
    ledger.observe((0, 0), {"timeline": [_run("a", 1.0, "interrupted"), _run("a", 2.0),
                                         _run("a", 3.0, nodes=0)]})  # fmt: skip
    counted = ledger.analyse()
    assert (counted.duplicate_executions, counted.aborted, counted.cached_runs) == (0, 1, 1)


def test_a_shorter_answer_never_replaces_a_longer_timeline() -> None:
    """The ledger keeps the longest timeline seen of an incarnation."""
    ledger = ExecutionLedger()
    ledger.observe((0, 0), {"timeline": [_run("a", 1.0), _run("b", 2.0)]})
    ledger.observe((0, 0), {"timeline": [_run("a", 1.0)]})
    assert [run.prompt_id for run in ledger.runs()] == ["a", "b"]


def test_short_soak_loses_nothing_and_runs_nothing_twice() -> None:
    """200 jobs through crashes, hangs, dropped sockets and worker kills: every job ends, once."""
    argv = [sys.executable, "-P", "-m", "comfyfarm", "bench", "soak", "--json",
            "--jobs", "200", "--workers", "3", "--fault-rate", "0.03", "--kill-every", "12",
            "--seed", "7", "--timeout", "75", "--settle", "9"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=110, check=False)
    assert done.stdout, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    shown = json.dumps({k: v for k, v in summary.items() if k != "options"}, indent=1)
    assert summary["lost"] == 0, shown
    assert summary["duplicate_executions"] == 0, shown
    assert summary["executions_exceeding_attempts"] == [], shown
    assert summary["succeeded"] + summary["failed_permanent"] == summary["submitted"] == 200, shown
    assert summary["missing_outputs"] == 0, shown
    faults = summary["faults_injected"]
    assert faults["crash"] >= 2 and faults["hang"] >= 2 and faults["drop_ws"] >= 2, shown
    assert faults["worker_kill"] >= 1, shown
    assert done.returncode == 0, shown
