"""GET /_sim/stats counts real executions, cached runs and busy time; --job-ms fixes job length."""

from __future__ import annotations

import requests
from sim_kit import Recorder, empty_image, new_id, seed_workflow, submit


def _run(url: str, recorder: Recorder, prompt: dict) -> str:
    prompt_id = submit(url, prompt, recorder.client_id)["prompt_id"]
    recorder.wait_done(prompt_id)
    return prompt_id


def test_stats_count_executions_and_cached_runs(sim):
    """A fresh run is an execution, an identical rerun is a cached run; both are on the timeline."""
    recorder = Recorder(sim.url, new_id())
    first = _run(sim.url, recorder, empty_image(1))
    second = _run(sim.url, recorder, empty_image(1))
    requests.post(f"{sim.url}/prompt", json={"prompt": {}})
    stats = requests.get(f"{sim.url}/_sim/stats").json()
    assert stats["executions"] == {first: 1}
    assert stats["cached_runs"] == {second: 1}
    assert [(t["prompt_id"], t["status"], t["cached"]) for t in stats["timeline"]] == [
        (first, "success", False),
        (second, "success", True),
    ]
    assert all(t["start"] <= t["end"] for t in stats["timeline"])
    assert 0 <= stats["busy_seconds"] <= stats["wall_seconds"]
    assert (stats["prompts_accepted"], stats["prompts_rejected"], stats["node_executions"]) == (
        2,
        1,
        2,
    )
    reset = requests.post(f"{sim.url}/_sim/stats/reset").json()
    assert reset["executions"] == {} and reset["timeline"] == []


def test_job_ms_fixes_the_time_of_executed_prompts(start_sim):
    """--job-ms 300 makes any executed prompt take about 300 ms and a cached one none."""
    sim = start_sim("--job-ms", "300")
    recorder = Recorder(sim.url, new_id())
    _run(sim.url, recorder, seed_workflow())
    _run(sim.url, recorder, seed_workflow())
    fresh, cached = requests.get(f"{sim.url}/_sim/stats").json()["timeline"]
    assert 0.3 <= fresh["end"] - fresh["start"] < 1.5
    assert cached["cached"] and cached["end"] - cached["start"] < 0.2
    steps = [m["data"]["value"] for m in recorder.texts() if m["type"] == "progress"]
    assert steps == list(range(1, 21))


def test_sampler_time_follows_steps_and_checkpoint_loads(start_sim):
    """--step-ms per step plus --load-ms for a new checkpoint; a new seed reuses the loaded one."""
    sim = start_sim("--step-ms", "10", "--load-ms", "200")
    recorder = Recorder(sim.url, new_id())
    prompt = seed_workflow()
    prompt["3"]["inputs"]["steps"] = 10
    _run(sim.url, recorder, prompt)
    prompt["3"]["inputs"]["seed"] = 99
    _run(sim.url, recorder, prompt)
    first, second = requests.get(f"{sim.url}/_sim/stats").json()["timeline"]
    assert first["end"] - first["start"] >= 0.3
    assert 0.1 <= second["end"] - second["start"] < first["end"] - first["start"]
    assert second["nodes_executed"] == 3  # KSampler, VAEDecode, SaveImage; the rest is cached


def test_failed_and_interrupted_runs_are_recorded(start_sim):
    """Runs ending in an error or an interrupt appear on the timeline with their outcome."""
    sim = start_sim("--fault", "node_error:class_type=SaveImage,times=1", "--step-ms", "1")
    recorder = Recorder(sim.url, new_id())
    failed = _run(sim.url, recorder, empty_image(2))
    (entry,) = requests.get(f"{sim.url}/_sim/stats").json()["timeline"]
    assert (entry["prompt_id"], entry["status"], entry["nodes_executed"]) == (failed, "error", 2)
