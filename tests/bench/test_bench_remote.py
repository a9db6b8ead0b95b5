"""`comfyfarm bench throughput --comfy-url`: the same comparison on ComfyUI servers given by URL
(here simulators started separately), busy time read from each prompt's history."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from comfyfarm_bench.remote import run_from_history

from comfyfarm.cli import main

TRACES = Path(__file__).resolve().parents[1] / "protocol"


def recorded_history(name: str) -> tuple[str, dict]:
    scenario = json.loads(next(TRACES.glob(f"{name}_*.json")).read_text())
    call = next(c for c in scenario["http"] if c["path"].startswith("/history/"))
    ((prompt_id, entry),) = call["response_json"].items()
    return prompt_id, entry


def test_busy_span_of_a_real_history_entry():
    """A real 0.3.64 history entry gives execution_start..execution_success in seconds."""
    prompt_id, entry = recorded_history("01")
    run = run_from_history(prompt_id, entry)
    assert run is not None and run.prompt_id == prompt_id and not run.cached
    stamps = {name: data["timestamp"] for name, data in entry["status"]["messages"]}
    assert run.seconds == pytest.approx(
        (stamps["execution_success"] - stamps["execution_start"]) / 1000, abs=1e-6
    )


def test_a_fully_cached_history_entry_is_a_cached_run():
    """The recorded identical resubmit (every node in execution_cached) is a cached run."""
    prompt_id, entry = recorded_history("02")
    run = run_from_history(prompt_id, entry)
    assert run is not None and run.cached


def test_throughput_on_servers_given_by_url(start_sim, capsys) -> None:
    """Two simulators by URL, a workflow with a seed parameter: every mode runs every job once
    (fresh seeds: no cache hits), busy time is measured from history, ratio for non-native."""
    sims = [start_sim("--job-ms", "60", "--load-ms", "0") for _ in range(2)]
    code = main(
        ["bench", "throughput", "--comfy-url", sims[0].url, "--comfy-url", sims[1].url,
         "--workflow", "sd15_text2image", "--param", "steps=4", "--jobs", "6", "--json"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert [row["mode"] for row in rows] == ["native", "naive", "farm"]
    for row in rows:
        assert row["instances"] == 2 and row["jobs"] == 6 and row["failed"] == 0
        assert row["executions"] == 6 and row["cached_runs"] == 0
        assert row["job_ms"] >= 55  # 60 ms of simulated GPU plus the saving of the image
        assert 0 < row["gpu_utilisation"] <= 1
        assert row["idle_gap_ms"]["count"] == 4  # 2 servers x (3 jobs - 1)
    assert rows[0]["ratio_to_native"] is None and rows[2]["ratio_to_native"] > 0


def test_workflow_flags_without_comfy_url_are_a_usage_error(capsys) -> None:
    """--workflow needs --comfy-url (the simulated fleet runs its own workflow)."""
    assert main(["bench", "--workflow", "empty_invert"]) == 2
    assert "--comfy-url" in capsys.readouterr().err
