"""``--comfy-version``: the simulator emulates ComfyUI 0.3.64 (as recorded) or a newer server
(job API list/get/cancel, canonical prompt ids only, every GPU in /system_stats)."""

from __future__ import annotations

import requests
from sim_kit import Recorder, empty_image, new_id, submit


def test_recorded_generation_has_no_jobs_api_and_one_gpu(sim):
    """Default 0.3.64: no /api/jobs, the recorded version, one device."""
    stats = requests.get(f"{sim.url}/system_stats").json()
    assert stats["system"]["comfyui_version"] == "0.3.64" and len(stats["devices"]) == 1
    assert requests.get(f"{sim.url}/api/jobs").status_code == 404


def test_newer_generation_lists_jobs_and_every_gpu(start_sim):
    """A newer version serves GET /api/jobs (newest first, status filter, pagination) and lists
    every GPU in /system_stats, primary first."""
    sim = start_sim("--comfy-version", "0.4.2", "--gpus", "2", "--step-ms", "1")
    stats = requests.get(f"{sim.url}/api/system_stats").json()
    assert stats["system"]["comfyui_version"] == "0.4.2"
    assert [device["index"] for device in stats["devices"]] == [0, 1]
    recorder = Recorder(sim.url, new_id())
    first = submit(sim.url, empty_image(8), recorder.client_id)["prompt_id"]
    recorder.wait_done(first)
    second = submit(sim.url, empty_image(9), recorder.client_id)["prompt_id"]
    recorder.wait_done(second)

    body = requests.get(f"{sim.url}/api/jobs", params={"status": "completed"}).json()

    assert [job["id"] for job in body["jobs"]] == [second, first]
    assert body["pagination"] == {"offset": 0, "limit": None, "total": 2, "has_more": False}
    assert "outputs" not in body["jobs"][0] and body["jobs"][0]["create_time"] > 0
    page = requests.get(f"{sim.url}/api/jobs", params={"limit": "1"}).json()
    assert len(page["jobs"]) == 1 and page["pagination"]["has_more"] is True
    bad = requests.get(f"{sim.url}/api/jobs", params={"status": "weird"})
    assert bad.status_code == 400 and "weird" in bad.json()["error"]
    assert requests.get(f"{sim.url}/api/jobs/{first}").json()["status"] == "completed"


def test_newer_generation_refuses_a_non_canonical_prompt_id(start_sim):
    """A newer server answers 400 invalid_prompt_id for an id that is not a lowercase UUID."""
    sim = start_sim("--comfy-version", "0.4.2")
    answer = requests.post(
        f"{sim.url}/prompt", json={"prompt": empty_image(8), "prompt_id": "ABC"}, timeout=5
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["type"] == "invalid_prompt_id"


def test_a_bad_version_is_a_usage_error(start_sim):
    """--comfy-version must look like 0.3.64: otherwise exit 2 with the reason."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-P", "-m", "comfyfarm.simulator", "--comfy-version", "new"],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 2 and "0.3.64" in done.stderr
