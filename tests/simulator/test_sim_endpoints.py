"""Informational and housekeeping endpoints (trace 13), restarts (trace 14), model lists, /view
rules and the optional jobs API."""

from __future__ import annotations

import pytest
import requests
import websocket
from sim_kit import (
    Recorder,
    empty_image,
    history,
    http_call,
    new_id,
    recorded_object_info,
    shape,
    submit,
    trace,
)


def _run(url: str, recorder: Recorder, prompt: dict, **extra) -> str:
    prompt_id = submit(url, prompt, recorder.client_id, **extra)["prompt_id"]
    recorder.wait_done(prompt_id)
    return prompt_id


def test_object_info_entries_equal_the_recorded_server(sim):
    """Every node the simulator knows has the real /object_info entry (file lists aside)."""
    real = recorded_object_info()
    ours = requests.get(f"{sim.url}/object_info").json()
    assert len(ours) >= 20
    dynamic = {"CheckpointLoaderSimple", "VAELoader", "LoraLoader", "LoadImage"}
    for name, entry in ours.items():
        if name not in dynamic:
            assert entry == real[name], name
    assert (
        requests.get(f"{sim.url}/api/object_info/SaveImage").json()
        == http_call(trace("13"), "", "/object_info/SaveImage")["response_json"]
    )
    assert requests.get(f"{sim.url}/object_info/NoSuchNode").json() == {}
    required = {
        "KSampler",
        "CheckpointLoaderSimple",
        "EmptyLatentImage",
        "CLIPTextEncode",
        "VAEDecode",
        "VAELoader",
        "SaveImage",
        "EmptyImage",
        "ImageInvert",
        "ImageScale",
        "LoadImage",
        "PreviewImage",
        "SaveAnimatedWEBP",
        "VAEEncode",
        "SaveImageWebsocket",
        "SaveAudio",
        "PreviewAny",
        "PrimitiveInt",
        "PrimitiveString",
    }
    assert required <= set(ours)


def test_misc_endpoints_match_trace_13(sim):
    """system_stats, embeddings, models, extensions, features and /free answer like ComfyUI."""
    scenario = trace("13")
    calls = {c["path"]: c for c in scenario["http"] if c["method"] == "GET"}
    for path in ("/embeddings", "/models", "/features", "/queue"):
        answer = requests.get(sim.url + path)
        assert answer.status_code == 200
        assert shape(answer.json()) == shape(calls[path]["response_json"])
    stats, recorded = (
        requests.get(f"{sim.url}/system_stats").json(),
        calls["/system_stats"]["response_json"],
    )
    # argv is the simulator's own command line: same kind (a list of strings), any length
    ours, theirs = dict(stats["system"]), dict(recorded["system"])
    assert all(isinstance(arg, str) for arg in ours.pop("argv"))
    theirs.pop("argv")
    assert shape(ours) == shape(theirs)
    assert stats["system"]["comfyui_version"] == "0.3.64"
    assert (
        stats["devices"][0].keys() == recorded["devices"][0].keys()
    )  # a simulated cuda:0, not the cpu
    assert all(isinstance(name, str) for name in requests.get(f"{sim.url}/extensions").json())
    assert requests.get(f"{sim.url}/models").json() == calls["/models"]["response_json"]
    assert requests.get(f"{sim.url}/features").json() == calls["/features"]["response_json"]
    assert requests.get(f"{sim.url}/models/checkpoints").json() == [
        "v1-5-pruned-emaonly-fp16.safetensors"
    ]
    missing = requests.get(f"{sim.url}/models/nonexistent_folder")
    assert (missing.status_code, missing.content) == (404, b"")
    for body in ({"unload_models": True, "free_memory": True}, {}):
        answer = requests.post(f"{sim.url}/free", json=body)
        assert (answer.status_code, answer.content) == (200, b"")


def test_history_listing_and_deletion_match_trace_13(sim):
    """max_items gives the newest entries, offset counts from the oldest, delete and clear work."""
    recorder = Recorder(sim.url, new_id())
    ids = [_run(sim.url, recorder, empty_image(i, prefix="h")) for i in range(4)]
    newest = requests.get(f"{sim.url}/history", params={"max_items": 2}).json()
    assert list(newest) == ids[2:]
    oldest = requests.get(f"{sim.url}/history", params={"max_items": 2, "offset": 0}).json()
    assert list(oldest) == ids[:2]
    assert requests.post(f"{sim.url}/history", json={"delete": ids[:2]}).content == b""
    assert history(sim.url, ids[0]) == {}
    assert list(requests.get(f"{sim.url}/history").json()) == ids[2:]
    requests.post(f"{sim.url}/api/history", json={"clear": True})
    assert requests.get(f"{sim.url}/history").json() == {}


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"filename": "does_not_exist.png", "type": "output"}, 404),
        ({"filename": "../../etc/passwd", "type": "output"}, 400),
        ({"filename": "/etc/passwd", "type": "output"}, 400),
        ({"filename": "x.png", "type": "output", "subfolder": "../.."}, 403),
        ({"filename": "x.png", "type": "nowhere"}, 400),
        ({"type": "output"}, 404),
    ],
)
def test_view_refuses_unsafe_or_missing_files(sim, params, status):
    """/view: 400 for traversal or absolute names, 403 for escaping subfolders, 404 when missing."""
    answer = requests.get(f"{sim.url}/view", params=params)
    assert (answer.status_code, answer.content) == (status, b"")


def test_view_serves_subfolders_and_annotated_names(sim):
    """Outputs saved under a prefix with a folder are served from that subfolder."""
    recorder = Recorder(sim.url, new_id())
    prompt_id = _run(sim.url, recorder, empty_image(3, prefix="runs/job1/img"))
    (image,) = history(sim.url, prompt_id)[prompt_id]["outputs"]["2"]["images"]
    assert (image["subfolder"], image["filename"]) == ("runs/job1", "img_00001_.png")
    assert requests.get(f"{sim.url}/view", params=image).status_code == 200
    annotated = requests.get(
        f"{sim.url}/view", params={"filename": "img_00001_.png [output]", "subfolder": "runs/job1"}
    )
    assert annotated.status_code == 200


def test_restart_forgets_history_queue_number_and_cache_like_trace_14(start_sim):
    """After SIGTERM and restart: sockets dropped, history and queue empty, number 0, no cache."""
    sim = start_sim("--class-ms", "ImageBlur=2000")
    recorder = Recorder(sim.url, new_id())
    done = _run(sim.url, recorder, empty_image(603767, prefix="proto_restart"))
    from sim_kit import blur_chain

    submit(sim.url, blur_chain(1), recorder.client_id)
    submit(sim.url, empty_image(5), recorder.client_id)
    recorder.wait_message("executing", node="10")
    sim.stop()
    assert isinstance(recorder.wait_closed(), websocket.WebSocketConnectionClosedException)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{sim.url}/prompt", timeout=2)
    sim.start()
    assert history(sim.url, done) == {}
    assert requests.get(f"{sim.url}/history").json() == {}
    assert requests.get(f"{sim.url}/queue").json() == {"queue_running": [], "queue_pending": []}
    again = Recorder(sim.url, recorder.client_id)
    response = submit(sim.url, empty_image(603767, prefix="proto_restart"), again.client_id)
    assert response["number"] == 0
    assert (
        again.wait_message("execution_cached", prompt_id=response["prompt_id"])["data"]["nodes"]
        == []
    )
    again.wait_done(response["prompt_id"])


def test_model_lists_follow_flags(start_sim):
    """--no-models empties the lists; --models fills a folder; VAELoader keeps pixel_space."""
    bare = start_sim("--no-models")
    info = requests.get(f"{bare.url}/object_info/VAELoader").json()["VAELoader"]["input"][
        "required"
    ]
    assert info["vae_name"][0] == ["pixel_space"]
    assert requests.get(f"{bare.url}/models/checkpoints").json() == []
    custom = start_sim(
        "--models", "checkpoints=b.safetensors,a.safetensors", "--models", "loras=l.safetensors"
    )
    info = requests.get(f"{custom.url}/object_info/CheckpointLoaderSimple").json()
    assert info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] == [
        "a.safetensors",
        "b.safetensors",
    ]
    assert requests.get(f"{custom.url}/models/loras").json() == ["l.safetensors"]
    assert requests.get(f"{custom.url}/models/vae").json() == [
        "vae-ft-mse-840000-ema-pruned.safetensors"
    ]


def test_jobs_api_is_off_by_default(sim):
    """Like the recorded 0.3.64 server, /api/jobs does not exist unless --jobs-api is given."""
    assert requests.get(f"{sim.url}/api/jobs/{new_id()}").status_code == 404


def test_jobs_api_reports_every_state(start_sim):
    """--jobs-api: /api/jobs/{id} reports pending, in_progress, completed, failed, cancelled."""
    sim = start_sim("--jobs-api", "--class-ms", "ImageBlur=300", "--step-ms", "1")
    from sim_kit import blur_chain

    recorder = Recorder(sim.url, new_id())
    assert requests.get(f"{sim.url}/api/jobs/{new_id()}").json() == {"error": "Job not found"}
    slow = submit(sim.url, blur_chain(7), recorder.client_id)["prompt_id"]
    waiting = submit(sim.url, empty_image(8), recorder.client_id)["prompt_id"]
    recorder.wait_message("executing", node="10", prompt_id=slow)
    job = lambda pid: requests.get(f"{sim.url}/api/jobs/{pid}").json()  # noqa: E731
    assert (job(slow)["status"], job(waiting)["status"]) == ("in_progress", "pending")
    assert requests.post(f"{sim.url}/api/jobs/{slow}/cancel").json() == {"cancelled": True}
    recorder.wait_done(waiting)
    assert (job(slow)["status"], job(waiting)["status"]) == ("cancelled", "completed")
    assert job(waiting)["outputs_count"] == 1 and job(waiting)["preview_output"]["nodeId"] == "2"
    broken = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "gone.png"}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }
    requests.post(f"{sim.url}/upload/image", files={"image": ("gone.png", b"not an image")})
    failed = _run(sim.url, recorder, broken)
    assert job(failed)["status"] == "failed" and job(failed)["execution_error"]["node_id"] == "1"
    assert requests.post(f"{sim.url}/api/jobs/{failed}/cancel").json() == {"cancelled": False}
