"""The simulator replays recorded ComfyUI 0.3.64 scenarios (01-05, 07, 08, 12) with the same
message types, order and body shapes as the real server."""

from __future__ import annotations

import json
import re
import struct

import requests
from sim_kit import (
    Recorder,
    empty_image,
    history,
    http_call,
    new_id,
    recorded_types,
    shape,
    submit,
    trace,
)


def collapsed(value):
    """Like ``shape`` but lists collapse to their first element (tracebacks differ in length)."""
    if isinstance(value, list):
        return [collapsed(value[0])] if value else []
    if isinstance(value, dict):
        return {key: collapsed(item) for key, item in value.items()}
    return shape(value)


def assert_same_socket(recorded: dict, recorder: Recorder) -> None:
    """Same message types in the same order, each with the recorded body shape."""
    ours = recorder.texts()
    theirs = [f["msg"] for f in recorded["received"] if f["frame"] == "text"]
    assert [m["type"] for m in ours] == [m["type"] for m in theirs]
    for mine, real in zip(ours, theirs, strict=True):
        assert collapsed(mine) == collapsed(real), mine["type"]


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == bytes.fromhex("89504e470d0a1a0a")
    return struct.unpack(">II", data[16:24])


def run_recorded(
    url: str, scenario: dict, prompt: dict, socket_index: int = 0
) -> tuple[Recorder, str]:
    recorder = Recorder(url, new_id())
    recorder.wait_message("status")
    prompt_id = submit(url, prompt, recorder.client_id)["prompt_id"]
    recorder.wait_done(prompt_id)
    assert_same_socket(scenario["ws"][socket_index], recorder)
    return recorder, prompt_id


def test_success_and_cached_resubmit_match_traces_01_02(sim):
    """A first run and an identical resubmission produce the recorded events, history and file."""
    first = trace("01")
    recorder, prompt_id = run_recorded(sim.url, first, first["workflow"])
    recorded_history = http_call(first, "", "/history")["response_json"]
    ours = history(sim.url, prompt_id)
    assert collapsed(ours[prompt_id]) == collapsed(next(iter(recorded_history.values())))
    assert ours[prompt_id]["outputs"]["2"]["images"][0]["filename"] == "proto_success_00001_.png"
    view = requests.get(
        f"{sim.url}/view",
        params={"filename": "proto_success_00001_.png", "subfolder": "", "type": "output"},
    )
    assert view.status_code == 200
    assert view.headers["Content-Type"] == "image/png"
    assert view.headers["Content-Disposition"] == 'filename="proto_success_00001_.png"'
    assert png_size(view.content) == (64, 64)

    second = trace("02")
    recorder2, cached_id = run_recorded(sim.url, second, second["workflow"])
    cached = recorder2.wait_message("execution_cached", prompt_id=cached_id)
    assert cached["data"]["nodes"] == ["1", "2"]
    executed = recorder2.wait_message("executed", prompt_id=cached_id)
    assert executed["data"]["output"]["images"][0]["filename"] == "proto_success_00001_.png"
    state = recorder2.wait_message("progress_state", prompt_id=cached_id)["data"]["nodes"]["2"]
    assert (state["value"], state["max"]) == (1, 1) and isinstance(state["value"], int)


def test_batch_of_two_through_a_chain_matches_trace_03(sim):
    """EmptyImage(batch 2) -> ImageInvert -> SaveImage reports two files, both viewable."""
    scenario = trace("03")
    _, prompt_id = run_recorded(sim.url, scenario, scenario["workflow"])
    images = history(sim.url, prompt_id)[prompt_id]["outputs"]["3"]["images"]
    assert [i["filename"] for i in images] == ["proto_invert_00001_.png", "proto_invert_00002_.png"]
    for image in images:
        view = requests.get(f"{sim.url}/view", params=image)
        assert png_size(view.content) == (32, 32)


def test_preview_image_goes_to_temp_with_random_prefix_like_trace_04(sim):
    """PreviewImage writes ComfyUI_temp_xxxxx_00001_.png with type temp."""
    scenario = trace("04")
    _, prompt_id = run_recorded(sim.url, scenario, scenario["workflow"])
    (image,) = history(sim.url, prompt_id)[prompt_id]["outputs"]["2"]["images"]
    assert re.fullmatch(r"ComfyUI_temp_[a-z]{5}_00001_\.png", image["filename"])
    assert image["type"] == "temp"
    assert requests.get(f"{sim.url}/view", params=image).status_code == 200


def _upload(url: str, name: str, data: bytes, **fields: str) -> requests.Response:
    return requests.post(
        f"{url}/upload/image", files={"image": (name, data, "image/png")}, data=fields
    )


def test_uploads_and_load_image_match_trace_05(sim):
    """Upload variants answer as recorded; LoadImage reads uploads, also from a subfolder."""
    from comfyfarm.simulator.images import encode_png

    scenario = trace("05")
    png = encode_png(8, 6, (1, 2, 3), (4, 5, 6))
    other = encode_png(8, 6, (9, 9, 9), (4, 5, 6))
    calls = [c for c in scenario["http"] if c["path"] == "/upload/image"]
    answers = [
        _upload(sim.url, "proto_upload.png", png, overwrite="true", type="input", subfolder=""),
        _upload(sim.url, "proto_upload.png", png),
        _upload(sim.url, "proto_upload.png", other),
        _upload(sim.url, "proto_sub.png", png, subfolder="protosub", type="input"),
        requests.post(f"{sim.url}/upload/image", files={"foo": (None, "bar")}),
    ]
    for answer, call in zip(answers, calls, strict=True):
        assert answer.status_code == call["status"]
        if call["status"] == 200:
            assert answer.json() == call["response_json"]
        else:
            assert answer.content == b""
    listing = requests.get(f"{sim.url}/object_info/LoadImage").json()["LoadImage"]["input"][
        "required"
    ]["image"][0]
    assert listing == ["proto_upload (1).png", "proto_upload.png"]

    recorder = Recorder(sim.url, new_id())
    recorder.wait_message("status")
    first = submit(sim.url, scenario["workflow"], recorder.client_id)["prompt_id"]
    recorder.wait_done(first)
    second = submit(sim.url, scenario["workflow_subfolder"], recorder.client_id)["prompt_id"]
    recorder.wait_done(second)
    assert_same_socket(scenario["ws"][0], recorder)
    (image,) = history(sim.url, first)[first]["outputs"]["3"]["images"]
    assert png_size(requests.get(f"{sim.url}/view", params=image).content) == (80, 60)
    uploaded = requests.get(
        f"{sim.url}/view", params={"filename": "proto_upload.png", "type": "input"}
    )
    assert uploaded.content == png
    assert history(sim.url, second)[second]["status"]["status_str"] == "success"


def test_runtime_error_matches_trace_07(sim):
    """A corrupt upload fails LoadImage at run time; earlier outputs stay in history and cache."""
    scenario = trace("07")
    assert (
        _upload(
            sim.url, "proto_corrupt.png", b"this is not an image....", overwrite="true"
        ).status_code
        == 200
    )
    recorder = Recorder(sim.url, new_id())
    recorder.wait_message("status")
    ids = []
    for _ in range(2):
        ids.append(submit(sim.url, scenario["workflow"], recorder.client_id)["prompt_id"])
        recorder.wait_done(ids[-1])
    assert_same_socket(scenario["ws"][0], recorder)
    errors = [m["data"] for m in recorder.texts() if m["type"] == "execution_error"]
    assert [(e["node_id"], e["node_type"], e["exception_type"]) for e in errors] == [
        ("3", "LoadImage", "PIL.UnidentifiedImageError")
    ] * 2
    assert errors[0]["exception_message"].startswith("cannot identify image file")
    assert errors[0]["exception_message"].endswith("proto_corrupt.png'\n")
    assert sorted(errors[0]["executed"]) == ["1", "2"] and errors[1]["executed"] == []
    assert errors[0]["current_inputs"] == {"image": ["proto_corrupt.png"]}
    for prompt_id, recorded in zip(
        ids, [c for c in scenario["http"] if c["path"].startswith("/history")], strict=True
    ):
        ours = history(sim.url, prompt_id)[prompt_id]
        assert collapsed(ours) == collapsed(next(iter(recorded["response_json"].values())))
        assert ours["status"]["status_str"] == "error" and ours["status"]["completed"] is False
        assert ours["outputs"]["2"]["images"][0]["filename"] == "proto_before_err_00001_.png"


def test_websocket_images_and_preview_metadata_match_trace_08(sim):
    """SaveImageWebsocket sends progress 0..n-1 with type-1 frames (type-4 after feature_flags)."""
    scenario = trace("08")
    workflows = list(scenario["workflows"].values())
    plain = Recorder(sim.url, new_id())
    plain.wait_message("status")
    flagged = Recorder(sim.url, new_id(), feature_flags=True)
    reply = flagged.wait_message("feature_flags")
    assert reply["data"] == {"supports_preview_metadata": True, "max_upload_size": 104857600}
    first = submit(sim.url, workflows[0], plain.client_id)["prompt_id"]
    plain.wait_done(first)
    second = submit(sim.url, workflows[1], flagged.client_id)["prompt_id"]
    flagged.wait_done(second)
    for recorder, recorded in ((plain, scenario["ws"][0]), (flagged, scenario["ws"][1])):
        expected = recorded_types(recorded)
        wanted = len(expected)
        recorder.wait_for(lambda frames, n=wanted: len(frames) >= n)
        assert recorder.types() == expected
    binaries = [f for f in plain.frames if isinstance(f, bytes)]
    assert all(b[:8] == bytes.fromhex("0000000100000002") for b in binaries)
    assert png_size(binaries[0][8:]) == (32, 32)
    frame = next(f for f in flagged.frames if isinstance(f, bytes))
    (length,) = struct.unpack(">I", frame[4:8])
    metadata = json.loads(frame[8 : 8 + length])
    assert length == 165  # same JSON layout as the recorded frame
    assert metadata == {
        "node_id": "2",
        "prompt_id": second,
        "display_node_id": "2",
        "parent_node_id": None,
        "real_node_id": "2",
        "image_type": "image/png",
    }
    assert png_size(frame[8 + length :]) == (32, 32)
    progress = [m["data"]["value"] for m in plain.texts() if m["type"] == "progress"]
    assert progress == [0, 1, 2, 3]
    ours = history(sim.url, first)[first]
    assert ours["outputs"] == {} and ours["meta"] == {}


def test_message_routing_and_reconnect_match_trace_12(start_sim):
    """Only the prompt's client gets execution events; reconnecting mid-run resumes the stream."""
    sim = start_sim("--class-ms", "ImageBlur=500")
    scenario = trace("12")
    sockets = {s["label"]: s for s in scenario["ws"]}
    submitter_id = new_id()
    submitter = Recorder(sim.url, submitter_id)
    observer = Recorder(sim.url, new_id())
    anonymous = Recorder(sim.url)
    for recorder in (submitter, observer, anonymous):
        recorder.wait_message("status")
    quiet = submit(sim.url, empty_image(76095, prefix="proto_noclient"))["prompt_id"]
    observer.wait_for(
        lambda frames: sum(1 for f in frames if isinstance(f, dict) and f["type"] == "status") == 4
    )
    assert history(sim.url, quiet)[quiet]["status"]["status_str"] == "success"

    slow = submit(sim.url, _slow_12b(), submitter_id)["prompt_id"]
    submitter.wait_message("executing", node="11")
    submitter.close()
    submitter.wait_closed()
    again = Recorder(sim.url, submitter_id)
    again.wait_done(slow)
    for recorder in (observer, anonymous):
        recorder.wait_for(
            lambda frames: (
                sum(1 for f in frames if isinstance(f, dict) and f["type"] == "status") == 7
            )
        )
    assert_same_socket(sockets["submitter (clientId=X)"], submitter)
    assert_same_socket(sockets["submitter reconnected with same clientId"], again)
    assert_same_socket(sockets["observer (different clientId, never submits)"], observer)
    assert_same_socket(
        sockets["anonymous socket (no clientId in URL; server assigns sid)"], anonymous
    )
    assert again.texts()[1]["data"] == {"node": "11"}
    assert re.fullmatch(r"[0-9a-f]{32}", anonymous.texts()[0]["data"]["sid"])


def _slow_12b() -> dict:
    prompt = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 76096},
        }
    }
    for node_id, source in (("10", "1"), ("11", "10"), ("12", "11")):
        prompt[node_id] = {
            "class_type": "ImageBlur",
            "inputs": {"image": [source, 0], "blur_radius": 31, "sigma": 10.0},
        }
    prompt["99"] = {"class_type": "PreviewImage", "inputs": {"images": ["12", 0]}}
    return prompt
