"""Each injectable fault does what it says, switched by CLI flags or POST /_sim/faults."""

from __future__ import annotations

import time

import pytest
import requests
import websocket
from sim_kit import Recorder, empty_image, history, new_id, submit

from comfyfarm.simulator.instance import CRASH_EXIT_CODE


def _arm(url: str, body: dict) -> dict:
    answer = requests.post(f"{url}/_sim/faults", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _run(url: str, recorder: Recorder, prompt: dict) -> str:
    prompt_id = submit(url, prompt, recorder.client_id)["prompt_id"]
    recorder.wait_done(prompt_id)
    return prompt_id


def test_crash_exits_the_process_during_the_nth_job(start_sim):
    """crash:nth=2 lets the first job finish and kills the server during the second."""
    sim = start_sim("--fault", "crash:nth=2,after_ms=50", "--job-ms", "500")
    recorder = Recorder(sim.url, new_id())
    _run(sim.url, recorder, empty_image(1))
    submit(sim.url, empty_image(2), recorder.client_id)
    assert sim.proc.process.wait(timeout=10) == CRASH_EXIT_CODE
    assert isinstance(recorder.wait_closed(), websocket.WebSocketConnectionClosedException)


def test_hang_never_finishes_and_ignores_interrupts(start_sim):
    """A hung job stays running: no completion, /interrupt has no effect, the queue stalls."""
    sim = start_sim("--fault", "hang")
    recorder = Recorder(sim.url, new_id())
    prompt_id = submit(sim.url, empty_image(1), recorder.client_id)["prompt_id"]
    recorder.wait_message("execution_start", prompt_id=prompt_id)
    requests.post(f"{sim.url}/interrupt")
    with pytest.raises(AssertionError):
        recorder.wait_done(prompt_id, timeout=0.5)
    queue = requests.get(f"{sim.url}/queue").json()
    assert [item[1] for item in queue["queue_running"]] == [prompt_id]
    assert requests.get(f"{sim.url}/_sim/stats").json()["runs"] == 0


def test_drop_ws_cuts_sockets_while_the_job_completes(start_sim):
    """drop_ws cuts every socket without a close frame; the job finishes, a reconnect follows it."""
    sim = start_sim("--fault", "drop_ws:after_ms=100", "--job-ms", "1000")
    recorder = Recorder(sim.url, new_id())
    prompt_id = submit(sim.url, empty_image(1), recorder.client_id)["prompt_id"]
    assert isinstance(recorder.wait_closed(), websocket.WebSocketConnectionClosedException)
    again = Recorder(sim.url, recorder.client_id)
    again.wait_done(prompt_id)
    assert history(sim.url, prompt_id)[prompt_id]["status"]["status_str"] == "success"


def test_node_error_by_class_fails_once_then_recovers(start_sim):
    """node_error:class_type=SaveImage,times=1 fails that node once; upstream stays cached."""
    sim = start_sim("--fault", "node_error:class_type=SaveImage,times=1", "--step-ms", "1")
    recorder = Recorder(sim.url, new_id())
    failed = _run(sim.url, recorder, empty_image(4))
    error = recorder.wait_message("execution_error", prompt_id=failed)["data"]
    assert (error["node_id"], error["node_type"], error["exception_type"]) == (
        "2",
        "SaveImage",
        "RuntimeError",
    )
    assert error["executed"] == ["1"] and error["traceback"]
    assert history(sim.url, failed)[failed]["status"]["status_str"] == "error"
    ok = _run(sim.url, recorder, empty_image(4))
    assert recorder.wait_message("execution_cached", prompt_id=ok)["data"]["nodes"] == ["1"]


def test_node_error_armed_at_runtime_by_node_id(sim):
    """POST /_sim/faults arms an error in one node id with a chosen exception type."""
    _arm(
        sim.url,
        {
            "node_error": {
                "node_id": "1",
                "exception_type": "torch.OutOfMemoryError",
                "message": "oom",
            }
        },
    )
    recorder = Recorder(sim.url, new_id())
    prompt_id = _run(sim.url, recorder, empty_image(5))
    error = recorder.wait_message("execution_error", prompt_id=prompt_id)["data"]
    assert (error["node_id"], error["exception_type"], error["exception_message"]) == (
        "1",
        "torch.OutOfMemoryError",
        "oom\n",
    )
    assert error["current_inputs"] == {"width": [8], "height": [8], "batch_size": [1], "color": [5]}


@pytest.mark.parametrize(
    ("mode", "filename", "subfolder"),
    [
        ("dotdot", "../t_00001_.png", ""),
        ("absolute", "/tmp/comfyfarm-evil/t_00001_.png", ""),  # noqa: S108
        ("nul", "t_00001_.png\x00.txt", ""),
        ("subfolder", "t_00001_.png", "../../.."),
    ],
)
def test_evil_output_reports_unsafe_names(sim, mode, filename, subfolder):
    """evil_output reports malicious names in executed and history; the real file keeps its name."""
    _arm(sim.url, {"evil_output": {"mode": mode}})
    recorder = Recorder(sim.url, new_id())
    prompt_id = _run(sim.url, recorder, empty_image(6))
    (image,) = recorder.wait_message("executed", prompt_id=prompt_id)["data"]["output"]["images"]
    assert (image["filename"], image["subfolder"]) == (filename, subfolder)
    assert history(sim.url, prompt_id)[prompt_id]["outputs"]["2"]["images"] == [image]
    real = requests.get(f"{sim.url}/view", params={"filename": "t_00001_.png", "type": "output"})
    assert real.status_code == 200


def test_prompt_5xx_fails_without_consuming_numbers(start_sim):
    """prompt_5xx:times=2 answers 500 twice (text/plain, like aiohttp), then gives number 0."""
    sim = start_sim("--fault", "prompt_5xx:times=2")
    for _ in range(2):
        answer = requests.post(f"{sim.url}/prompt", json={"prompt": empty_image(1)})
        assert answer.status_code == 500
        assert answer.text == "500 Internal Server Error\n\nServer got itself in trouble"
    assert submit(sim.url, empty_image(1))["number"] == 0


def test_view_500_and_view_slow(sim):
    """view_500 fails one download; view_slow trickles the bytes at the configured rate."""
    recorder = Recorder(sim.url, new_id())
    prompt_id = _run(sim.url, recorder, empty_image(7, size=128))
    (image,) = history(sim.url, prompt_id)[prompt_id]["outputs"]["2"]["images"]
    full = requests.get(f"{sim.url}/view", params=image).content
    _arm(sim.url, {"view_500": {"times": 1}})
    assert requests.get(f"{sim.url}/view", params=image).status_code == 500
    assert requests.get(f"{sim.url}/view", params=image).content == full
    rate = 4 * len(full)  # four chunks of a tenth of a second
    _arm(sim.url, {"view_500": None, "view_slow": {"bytes_per_second": rate}})
    started = time.monotonic()
    slow = requests.get(f"{sim.url}/view", params=image)
    assert slow.content == full and int(slow.headers["Content-Length"]) == len(full)
    assert time.monotonic() - started >= 0.2


@pytest.mark.parametrize("mode", ["html", "garbage", "truncated", "empty"])
def test_garbage_answers_break_json(sim, mode):
    """garbage answers a route (also under /api) with HTML, junk, half a body or nothing."""
    _arm(sim.url, {"garbage": {"route": "/queue", "mode": mode}})
    for path in ("/queue", "/api/queue"):
        answer = requests.get(sim.url + path)
        assert answer.status_code == 200
        with pytest.raises(ValueError):
            answer.json()
    assert requests.get(f"{sim.url}/prompt").json() == {"exec_info": {"queue_remaining": 0}}


def test_fault_control_api_lists_validates_and_resets(sim):
    """GET/POST /_sim/faults show armed faults with counters, refuse unknown ones and reset."""
    state = _arm(sim.url, {"prompt_5xx": {"nth": 2, "status": 503}, "view_slow": True})
    assert state["faults"]["prompt_5xx"] == {
        "status": 503,
        "nth": 2,
        "times": None,
        "rate": None,
        "occurrences": 0,
        "fired": 0,
    }
    assert requests.post(f"{sim.url}/prompt", json={"prompt": empty_image(1)}).status_code == 200
    assert requests.post(f"{sim.url}/prompt", json={"prompt": empty_image(1)}).status_code == 503
    assert requests.get(f"{sim.url}/_sim/faults").json()["faults"]["prompt_5xx"]["fired"] == 1
    for bad in (
        {"meteor": {}},
        {"crash": {"nope": 1}},
        {"crash": {"nth": 0}},
        {"evil_output": {"mode": "x"}},
        [1],
    ):
        answer = requests.post(f"{sim.url}/_sim/faults", json=bad)
        assert answer.status_code == 400 and "error" in answer.json()
    assert _arm(sim.url, {"reset": True})["faults"] == {}


def test_random_faults_fire_at_the_configured_rate(start_sim):
    """--fault-rate 1 with kinds prompt_5xx fails every submission, and the stats count them."""
    sim = start_sim("--fault-rate", "1", "--fault-kinds", "prompt_5xx", "--fault-seed", "7")
    for _ in range(3):
        assert (
            requests.post(f"{sim.url}/prompt", json={"prompt": empty_image(1)}).status_code == 500
        )
    snapshot = requests.get(f"{sim.url}/_sim/faults").json()["random"]
    assert snapshot == {"rate": 1.0, "kinds": ["prompt_5xx"], "seed": 7, "fired": {"prompt_5xx": 3}}
    assert requests.get(f"{sim.url}/_sim/stats").json()["faults_fired"] == {"prompt_5xx": 3}
