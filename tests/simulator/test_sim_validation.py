"""POST /prompt validation answers every recorded case of trace 06 with the same status and body."""

from __future__ import annotations

import json

import pytest
import requests
from sim_kit import Recorder, history, new_id, seed_workflow, submit, trace

from comfyfarm.services import SimulatorProcess

CASES = [call for call in trace("06")["http"] if call["path"] == "/prompt"]


def _normalise(body, *, accepted: bool):
    """Drop what differs between runs: ids, numbers and the text of tracebacks."""
    if isinstance(body, dict):
        out = {}
        for key, value in body.items():
            if accepted and key in ("prompt_id", "number"):
                continue
            if key == "traceback":
                assert (
                    isinstance(value, list)
                    and value
                    and all(isinstance(line, str) for line in value)
                )
                out[key] = "<traceback>"
            else:
                out[key] = _normalise(value, accepted=accepted)
        return out
    if isinstance(body, list):
        return [_normalise(item, accepted=accepted) for item in body]
    return body


@pytest.fixture(scope="module")
def shared_sim():
    with SimulatorProcess(args=("--step-ms", "1")) as sim:
        yield sim


def _post(url: str, call: dict) -> requests.Response:
    if "request_json" in call:
        return requests.post(f"{url}/prompt", json=call["request_json"], timeout=10)
    body = call["request_body"]["raw_body"]
    return requests.post(
        f"{url}/prompt", data=body, headers=call.get("request_headers", {}), timeout=10
    )


def test_all_nineteen_cases_are_covered():
    """The trace holds the 19 cases the simulator must reproduce."""
    assert len(CASES) == 19


@pytest.mark.parametrize("call", CASES, ids=[c["note"] for c in CASES])
def test_validation_case_matches_trace_06(shared_sim, call):
    """Status code, content type and body equal the recorded answer (ids and tracebacks aside)."""
    response = _post(shared_sim.url, call)
    assert response.status_code == call["status"]
    assert response.headers["Content-Type"] == call["response_headers"]["Content-Type"]
    if "response_json" in call:
        accepted = call["status"] == 200
        expected = _normalise(call["response_json"], accepted=accepted)
        assert _normalise(response.json(), accepted=accepted) == expected
    else:
        assert response.text == call["response_text"]


def test_accepted_cases_run_like_trace_06(sim):
    """The two accepted prompts (coerced value, partial outputs) produce the recorded events."""
    scenario = trace("06")
    recorder = Recorder(sim.url, new_id())
    recorder.wait_message("status")
    numbers = []
    for call in CASES:
        body = (
            dict(call["request_json"], client_id=recorder.client_id)
            if "request_json" in call
            else None
        )
        response = requests.post(f"{sim.url}/prompt", json=body) if body else _post(sim.url, call)
        if response.status_code == 200:
            numbers.append(response.json()["number"])
            recorder.wait_done(response.json()["prompt_id"])
    recorded = [m["msg"]["type"] for m in scenario["ws"][0]["received"] if m["frame"] == "text"]
    assert recorder.types() == recorded
    assert numbers == [9, 16]  # rejected prompts consume numbers too, except unparseable bodies


def test_coerced_value_is_stored_converted(sim):
    """A numeric string for an INT input is accepted and stored as an int (prompt mutated)."""
    prompt = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": "16", "height": 8, "batch_size": 1, "color": 1},
        },
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "c"}},
    }
    recorder = Recorder(sim.url, new_id())
    prompt_id = submit(sim.url, prompt, recorder.client_id)["prompt_id"]
    recorder.wait_done(prompt_id)
    stored = history(sim.url, prompt_id)[prompt_id]["prompt"][2]
    assert stored["1"]["inputs"]["width"] == 16


def test_seed_workflow_without_models_is_rejected_like_trace_15(start_sim):
    """With --no-models the SD1.5 workflow fails on ckpt_name exactly as on a model-less ComfyUI."""
    sim = start_sim("--no-models")
    call = trace("15")["server_response_to_api_prompt"][0]
    response = requests.post(f"{sim.url}/prompt", json=call["request_json"])
    assert response.status_code == 400
    assert response.json() == call["response_json"]


def test_long_choice_lists_are_not_echoed(sim):
    """A bad sampler_name (a list of 42) reports the list length instead of the list."""
    prompt = seed_workflow()
    prompt["3"]["inputs"]["sampler_name"] = "nope"
    response = requests.post(f"{sim.url}/prompt", json={"prompt": prompt})
    error = response.json()["node_errors"]["3"]["errors"][0]
    assert error["type"] == "value_not_in_list"
    assert error["details"].startswith("sampler_name: 'nope' not in (list of length ")
    assert error["extra_info"]["input_config"] is None


def test_dependency_cycle_is_rejected(sim):
    """Nodes linked in a cycle fail validation instead of hanging the server."""
    prompt = {
        "1": {"class_type": "ImageInvert", "inputs": {"image": ["2", 0]}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}},
    }
    response = requests.post(f"{sim.url}/prompt", json={"prompt": prompt})
    assert response.status_code == 400
    body = json.dumps(response.json())
    assert "dependency_cycle" in body
