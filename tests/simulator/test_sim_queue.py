"""Interrupts (trace 09), queue inspection and deletion (trace 10) and prompt ids, front, number
and extra_data (trace 11) behave as recorded."""

from __future__ import annotations

import requests
from sim_kit import (
    Recorder,
    blur_chain,
    empty_image,
    history,
    http_call,
    new_id,
    recorded_types,
    shape,
    submit,
    trace,
)

# Margins for the test to act between node boundaries, as the recorder did on the real server.
SLOW = ("--class-ms", "ImageBlur=500", "--class-ms", "EmptyImage=300", "--step-ms", "1")
SLOW_BLUR = ("--class-ms", "ImageBlur=500", "--step-ms", "1")


def _interrupted(recorder: Recorder) -> list[dict]:
    return [m["data"] for m in recorder.texts() if m["type"] == "execution_interrupted"]


def test_interrupt_variants_match_trace_09(start_sim):
    """Global, targeted, non-matching and idle interrupts act at node boundaries as recorded."""
    sim = start_sim(*SLOW)
    scenario = trace("09")
    recorder = Recorder(sim.url, new_id())
    recorder.wait_message("status")
    client = recorder.client_id

    first = submit(sim.url, blur_chain(645058, blurs=6), client)["prompt_id"]  # 09a
    recorder.wait_message("executing", node="11", prompt_id=first)
    assert requests.post(f"{sim.url}/interrupt").status_code == 200
    recorder.wait_done(first)

    second = submit(sim.url, blur_chain(646058, blurs=6), client)["prompt_id"]  # 09b
    recorder.wait_message("executing", node="11", prompt_id=second)
    ignored = requests.post(
        f"{sim.url}/interrupt", json={"prompt_id": "00000000-0000-0000-0000-000000000000"}
    )
    assert (ignored.status_code, ignored.content) == (200, b"")
    requests.post(f"{sim.url}/interrupt", json={"prompt_id": second})
    recorder.wait_done(second)

    requests.post(f"{sim.url}/interrupt")  # 09c: idle interrupt, the next prompt is unaffected
    quick = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 647058},
        },
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }
    third = submit(sim.url, quick, client)["prompt_id"]
    recorder.wait_done(third)

    slow = submit(sim.url, blur_chain(648058, blurs=6), client)["prompt_id"]  # 09d
    recorder.wait_message("executing", node="1", prompt_id=slow)
    queued = submit(
        sim.url,
        dict(quick, **{"1": {**quick["1"], "inputs": {**quick["1"]["inputs"], "color": 648059}}}),
        client,
    )
    recorder.wait_message("executing", node="10", prompt_id=slow)
    requests.post(f"{sim.url}/interrupt")
    recorder.wait_done(queued["prompt_id"])

    assert recorder.types() == recorded_types(scenario["ws"][0])
    stops = _interrupted(recorder)
    assert [(s["prompt_id"], s["node_id"], s["node_type"]) for s in stops] == [
        (first, "12", "ImageBlur"),
        (second, "12", "ImageBlur"),
        (slow, "11", "ImageBlur"),
    ]
    assert [sorted(s["executed"]) for s in stops] == [
        ["1", "10", "11"],
        ["1", "10", "11"],
        ["1", "10"],
    ]
    recorded = http_call(scenario, "", "/history/9778")["response_json"]
    ours = history(sim.url, first)
    assert shape(ours[first]) == shape(next(iter(recorded.values())))
    assert ours[first]["status"]["status_str"] == "error" and ours[first]["outputs"] == {}
    assert (
        history(sim.url, queued["prompt_id"])[queued["prompt_id"]]["status"]["status_str"]
        == "success"
    )


def test_interrupt_between_sampler_steps(start_sim):
    """A KSampler stops at the next step after an interrupt; later steps are never reported."""
    from sim_kit import seed_workflow

    sim = start_sim("--step-ms", "40", "--load-ms", "0")
    recorder = Recorder(sim.url, new_id())
    prompt_id = submit(sim.url, seed_workflow(), recorder.client_id)["prompt_id"]
    recorder.wait_message("progress", value=2, prompt_id=prompt_id)
    requests.post(f"{sim.url}/interrupt", json={"prompt_id": prompt_id})
    recorder.wait_done(prompt_id)
    (stop,) = _interrupted(recorder)
    assert stop["node_id"] == "3" and stop["node_type"] == "KSampler"
    steps = [m["data"]["value"] for m in recorder.texts() if m["type"] == "progress"]
    assert 2 <= max(steps) < 20


def test_queue_inspection_and_deletion_match_trace_10(start_sim):
    """Delete and clear only touch pending prompts; deleted prompts never reach the history."""
    sim = start_sim(*SLOW_BLUR)
    scenario = trace("10")
    recorder = Recorder(sim.url, new_id())
    recorder.wait_message("status")
    ids = [
        submit(sim.url, blur_chain(649058 + i, blurs=4), recorder.client_id)["prompt_id"]
        for i in range(5)
    ]
    listing = requests.get(f"{sim.url}/queue").json()
    assert shape(listing) == shape(scenario["http"][5]["response_json"])
    assert [item[1] for item in listing["queue_running"]] == ids[:1]
    assert sorted(item[1] for item in listing["queue_pending"]) == sorted(ids[1:])
    assert requests.get(f"{sim.url}/prompt").json() == {"exec_info": {"queue_remaining": 5}}
    assert requests.get(f"{sim.url}/api/prompt").json() == {"exec_info": {"queue_remaining": 5}}
    for target in (ids[2], ids[0], "no-such-id"):
        answer = requests.post(f"{sim.url}/queue", json={"delete": [target]})
        assert (answer.status_code, answer.content) == (200, b"")
    listing = requests.get(f"{sim.url}/queue").json()
    assert [item[1] for item in listing["queue_running"]] == ids[:1]
    assert sorted(item[1] for item in listing["queue_pending"]) == sorted([ids[1], ids[3], ids[4]])
    requests.post(f"{sim.url}/queue", json={"clear": True})
    assert requests.get(f"{sim.url}/queue").json()["queue_pending"] == []
    requests.post(f"{sim.url}/interrupt")
    recorder.wait_done(ids[0])
    assert requests.get(f"{sim.url}/queue").json() == {"queue_running": [], "queue_pending": []}
    remaining = [
        m["data"]["status"]["exec_info"]["queue_remaining"]
        for m in recorder.texts()
        if m["type"] == "status"
    ]
    recorded = [
        f["msg"]["data"]["status"]["exec_info"]["queue_remaining"]
        for f in scenario["ws"][0]["received"]
        if f["frame"] == "text" and f["msg"]["type"] == "status"
    ]
    assert remaining == recorded
    assert history(sim.url, ids[0])[ids[0]]["status"]["messages"][-1][0] == "execution_interrupted"
    assert all(history(sim.url, i) == {} for i in ids[1:])


def test_prompt_id_front_number_and_extra_data_match_trace_11(start_sim):
    """Ids are str()-ed, duplicates run twice, front/number order the queue, extra_data is kept."""
    sim = start_sim(*SLOW_BLUR)
    scenario = trace("11")
    recorder = Recorder(sim.url, new_id())
    client = recorder.client_id
    quick = {
        letter: empty_image(75096 + i, prefix=f"proto_{letter}")
        for i, letter in enumerate("BCDEFGH")
    }
    dup = "2cd69691-9283-4909-b02b-23d27451f21d"
    extra = {"extra_pnginfo": {"workflow": {"note": "x"}}, "my_custom_key": {"job": "celery-123"}}
    a = submit(sim.url, blur_chain(75095, blurs=3), client)
    recorder.wait_message("executing", node="1", prompt_id=a["prompt_id"])
    b = submit(sim.url, quick["B"], client, prompt_id=dup, extra_data=extra)
    c = submit(sim.url, quick["C"], client)
    d = submit(sim.url, quick["D"], client, front=True)
    e = submit(sim.url, quick["E"], client, number=0.5)
    f = submit(sim.url, quick["F"], client, prompt_id=dup)
    g = submit(sim.url, quick["G"], extra_data={"client_id": client})
    h = submit(sim.url, quick["H"], client, prompt_id=12345)
    assert (b["prompt_id"], f["prompt_id"], h["prompt_id"]) == (dup, dup, "12345")
    assert (d["number"], e["number"]) == (-3, 0.5) and isinstance(e["number"], float)
    letters = {
        d["prompt_id"]: "D",
        e["prompt_id"]: "E",
        c["prompt_id"]: "C",
        g["prompt_id"]: "G",
        "12345": "H",
    }
    pending = requests.get(f"{sim.url}/queue").json()["queue_pending"]
    by_number = {item[0]: item for item in pending}
    assert by_number[1][3] == {**extra, "client_id": client}
    recorded_pending = [
        it[1]
        for it in http_call(scenario, "pending order", "/queue")["response_json"]["queue_pending"]
    ]
    names = scenario["letters_by_prompt_id"]
    labels = {**letters, dup: names[dup]}
    assert [labels[item[1]] for item in pending] == [names[p] for p in recorded_pending]
    recorder.wait_done("12345")
    starts = [m["data"]["prompt_id"] for m in recorder.texts() if m["type"] == "execution_start"]
    order = [{a["prompt_id"]: "A", dup: "B/F", **letters}[p] for p in starts]
    assert order == scenario["execution_start_order"]
    kept = history(sim.url, dup)[dup]
    assert (
        kept["prompt"][0] == f["number"]
        and kept["outputs"]["2"]["images"][0]["filename"] == "proto_F_00001_.png"
    )
