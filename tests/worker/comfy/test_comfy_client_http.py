"""ComfyClient's HTTP mapping, on recorded answers served by a fake transport (no server)."""

from __future__ import annotations

import json
import uuid

import pytest
from comfy_fake_http import BASE, Answer, FakeComfy, session_for
from comfy_traces import http_calls, load

from comfyfarm.comfy.client import ComfyClient
from comfyfarm.comfy.errors import (
    ComfyRequestError,
    ComfyServerError,
    ComfyUnavailable,
    PromptRejected,
)
from comfyfarm.comfy.outputs import OutputFile
from comfyfarm.comfy.state import PromptState

PROMPT = {"1": {"class_type": "EmptyImage", "inputs": {}}}
API_PROBE = {("GET", "/api/prompt"): Answer(200, {"exec_info": {"queue_remaining": 0}})}


def make_client(routes, *, api=True):
    fake = FakeComfy(routes={**(API_PROBE if api else {}), **routes})
    return ComfyClient(BASE, timeout=5, session=session_for(fake)), fake


def submit(client, **kwargs):
    return client.queue_prompt(PROMPT, prompt_id=str(uuid.uuid4()), client_id="worker-1", **kwargs)


def recorded_prompt_answers():
    calls = http_calls(load("06"), "POST", "/prompt")
    return [(call["note"], call) for call in calls]


@pytest.mark.parametrize(
    "note,call",
    [c for c in recorded_prompt_answers() if c[1]["status"] == 400],
    ids=[c[0] for c in recorded_prompt_answers() if c[1]["status"] == 400],
)
def test_recorded_400_maps_to_prompt_rejected(note, call):
    """Every recorded 400 answer of trace 06 becomes PromptRejected with ComfyUI's data."""
    body = call["response_json"]
    client, _ = make_client({("POST", "/api/prompt"): Answer(400, body)})
    with pytest.raises(PromptRejected) as caught:
        submit(client)
    error = caught.value
    assert error.error_type == body["error"]["type"]
    assert error.message == body["error"]["message"]
    assert not error.partial
    recorded = [
        (node_id, e["type"], e["extra_info"].get("input_name"))
        for node_id, entry in body["node_errors"].items()
        for e in entry["errors"]
    ]
    assert [(n.node_id, n.error_type, n.input_name) for n in error.node_errors] == recorded
    json.dumps(error.to_dict())


def test_rejection_names_node_input_and_received_value():
    """A bad enum value names node, class, input and the value that was sent."""
    call = next(c for n, c in recorded_prompt_answers() if n.startswith("bad enum"))
    client, _ = make_client({("POST", "/api/prompt"): Answer(400, call["response_json"])})
    with pytest.raises(PromptRejected) as caught:
        submit(client)
    (node_error,) = caught.value.node_errors
    assert node_error.node_id == "2" and node_error.class_type == "ImageScale"
    assert node_error.input_name == "upscale_method"
    assert node_error.received_value == "super-resolution"
    assert "upscale_method" in str(caught.value)


def test_partial_accept_is_rejected_and_cancelled_by_default():
    """200 with node_errors (trace 06 last case): PromptRejected(partial), the job is dequeued."""
    call = next(c for n, c in recorded_prompt_answers() if n.startswith("two outputs"))
    answer = dict(call["response_json"])
    client, fake = make_client(
        {
            ("POST", "/api/prompt"): lambda req: Answer(
                200, {**answer, "prompt_id": json.loads(req.body)["prompt_id"]}
            ),
            ("POST", "/api/queue"): Answer(200, None),
            ("POST", "/api/interrupt"): Answer(200, None),
        }
    )
    with pytest.raises(PromptRejected) as caught:
        submit(client)
    assert caught.value.partial
    assert caught.value.node_errors[0].input_name == "upscale_method"
    sent_id = fake.json_bodies("POST", "/api/prompt")[0]["prompt_id"]
    assert fake.json_bodies("POST", "/api/queue") == [{"delete": [sent_id]}]
    assert fake.json_bodies("POST", "/api/interrupt") == [{"prompt_id": sent_id}]


def test_partial_accept_allowed_on_request():
    """allow_partial=True returns the queued prompt with its node errors."""
    call = next(c for n, c in recorded_prompt_answers() if n.startswith("two outputs"))
    client, _ = make_client({("POST", "/api/prompt"): Answer(200, call["response_json"])})
    queued = submit(client, allow_partial=True)
    assert queued.number == 22 and queued.node_errors[0].node_id == "3"


def test_recorded_500_is_server_error():
    """The 500 text/plain answer to a broken body becomes ComfyServerError (retryable)."""
    call = next(c for n, c in recorded_prompt_answers() if c["status"] == 500)
    client, _ = make_client({("POST", "/api/prompt"): Answer(500, call["response_text"])})
    with pytest.raises(ComfyServerError) as caught:
        submit(client)
    assert caught.value.status == 500 and "Server got itself in trouble" in caught.value.body


def test_submit_body_has_client_id_prompt_id_extra_data_and_front():
    """POST /prompt carries our prompt id, client id, extra_data and front."""
    client, fake = make_client(
        {("POST", "/api/prompt"): Answer(200, {"prompt_id": "x", "number": 3, "node_errors": {}})}
    )
    prompt_id = str(uuid.uuid4())
    queued = client.queue_prompt(
        PROMPT, prompt_id=prompt_id, client_id="w", extra_data={"job": 1}, front=True
    )
    assert queued.number == 3
    (body,) = fake.json_bodies("POST", "/api/prompt")
    assert body == {
        "prompt": PROMPT,
        "client_id": "w",
        "prompt_id": prompt_id,
        "extra_data": {"job": 1},
        "front": True,
    }


@pytest.mark.parametrize("bad", ["abc", "12345", str(uuid.uuid4()).upper(), ""])
def test_prompt_id_must_be_a_canonical_uuid(bad):
    """Non-canonical prompt ids are refused before anything is sent."""
    client, fake = make_client({})
    with pytest.raises(ValueError):
        client.queue_prompt(PROMPT, prompt_id=bad, client_id="w")
    assert fake.requests == []


def test_html_answer_is_unavailable_with_a_clear_reason():
    """A proxy's HTML page where JSON is expected is ComfyUnavailable, naming the route."""
    client, _ = make_client(
        {("GET", "/api/queue"): Answer(200, "<html>502</html>", "text/html; charset=utf-8")}
    )
    with pytest.raises(ComfyUnavailable) as caught:
        client.get_queue()
    assert caught.value.reason == "expected JSON from /api/queue, got text/html"


def test_invalid_json_is_unavailable():
    """A body that claims JSON but is not is ComfyUnavailable."""
    client, _ = make_client({("GET", "/api/system_stats"): Answer(200, "{", "application/json")})
    with pytest.raises(ComfyUnavailable, match="invalid JSON from /api/system_stats"):
        client.system_stats()


def test_routes_without_api_prefix_when_the_server_has_none():
    """A server without /api/ routes is used through the plain routes (probed once)."""
    client, fake = make_client(
        {("GET", "/queue"): Answer(200, {"queue_running": [], "queue_pending": []})}, api=False
    )
    client.get_queue()
    client.get_queue()
    assert len(fake.calls("GET", "/api/prompt")) == 1
    assert len(fake.calls("GET", "/queue")) == 2


def test_connection_refused_is_unavailable():
    """Nothing listening: ComfyUnavailable (retryable), no hang."""
    client = ComfyClient("http://127.0.0.1:9", timeout=2)
    with pytest.raises(ComfyUnavailable) as caught:
        client.system_stats()
    assert caught.value.url == "http://127.0.0.1:9"


def test_history_unknown_id_is_none():
    """``{}`` from /history/{id} means not finished or unknown: None."""
    client, _ = make_client({("GET", "/api/history/abc"): Answer(200, {})})
    assert client.get_history("abc") is None


def test_queue_snapshot_orders_pending_by_number():
    """Trace 10: running and pending ids, pending in execution order."""
    call = http_calls(load("10"), "GET", "/queue")[0]
    client, _ = make_client({("GET", "/api/queue"): Answer(200, call["response_json"])})
    snapshot = client.get_queue()
    ids = load("10")["prompt_ids"]
    assert snapshot.running == ids[:1] and snapshot.pending == ids[1:]


def test_lookup_finds_a_prompt_that_finished_between_queue_and_history():
    """Lookup without a job API asks history, queue, then history again (no false 'unknown')."""
    trace = load("01")
    entry = http_calls(trace, "GET", "/history/")[0]["response_json"]
    prompt_id = trace["prompt_id"]
    answers = iter([{}, entry])
    client, _ = make_client(
        {
            ("GET", f"/api/history/{prompt_id}"): lambda _: Answer(200, next(answers)),
            ("GET", "/api/queue"): Answer(200, {"queue_running": [], "queue_pending": []}),
        }
    )
    found = client.lookup(prompt_id)
    assert found.state is PromptState.DONE and found.history.succeeded


def test_lookup_uses_the_job_api_when_present():
    """With /api/jobs the job status decides pending/running without reading the queue."""
    client, fake = make_client(
        {
            ("GET", "/api/jobs/00000000-0000-0000-0000-000000000000"): Answer(
                404, {"error": "Job not found"}
            ),
            ("GET", "/api/jobs/p1"): Answer(200, {"id": "p1", "status": "in_progress"}),
            ("GET", "/api/jobs/p2"): Answer(404, {"error": "Job not found"}),
        }
    )
    assert client.lookup("p1").state is PromptState.RUNNING
    assert client.lookup("p2").state is PromptState.UNKNOWN
    assert fake.calls("GET", "/api/queue") == []


def test_cancel_without_job_api_dequeues_then_interrupts_that_prompt():
    """Cancel = delete from the queue, then a targeted interrupt; never a global one."""
    client, fake = make_client(
        {("POST", "/api/queue"): Answer(200), ("POST", "/api/interrupt"): Answer(200)}
    )
    client.cancel("p1")
    assert fake.json_bodies("POST", "/api/queue") == [{"delete": ["p1"]}]
    assert fake.json_bodies("POST", "/api/interrupt") == [{"prompt_id": "p1"}]
    with pytest.raises(ValueError):
        client.interrupt("")


def test_view_404_is_a_request_error():
    """A missing output file is ComfyRequestError (permanent), not a crash."""
    client, _ = make_client({})
    output = OutputFile("9", "images", 0, "gone.png", "", "output")
    with pytest.raises(ComfyRequestError) as caught:
        b"".join(client.iter_output(output))
    assert caught.value.status == 404


def test_download_streams_to_dest_atomically(tmp_path):
    """download writes through a temp file and renames; chunks arrive in pieces."""
    payload = bytes(range(256)) * 50
    client, fake = make_client({("GET", "/api/view"): Answer(200, payload, "image/png")})
    output = OutputFile("9", "images", 0, "a.png", "sub", "output")
    assert [len(c) for c in client.iter_output(output, chunk_size=5000)] == [5000, 5000, 2800]
    dest = tmp_path / "out" / "a.png"
    assert client.download(output, dest) == len(payload)
    assert dest.read_bytes() == payload
    assert list(dest.parent.iterdir()) == [dest]
    assert "filename=a.png&subfolder=sub&type=output" in fake.calls("GET", "/api/view")[0].url


def test_failed_download_leaves_nothing(tmp_path):
    """A download that fails leaves neither dest nor temp files."""
    client, _ = make_client({("GET", "/api/view"): Answer(500, "boom")})
    dest = tmp_path / "a.png"
    with pytest.raises(ComfyServerError):
        client.download(OutputFile("9", "images", 0, "a.png", "", "output"), dest)
    assert list(tmp_path.iterdir()) == []


def test_upload_sends_multipart_fields():
    """upload_image posts the file with type, subfolder and overwrite; answer gives the name."""
    client, fake = make_client(
        {
            ("POST", "/api/upload/image"): Answer(
                200, {"name": "x (1).png", "subfolder": "job", "type": "input"}
            )
        }
    )
    uploaded = client.upload_image(b"PNG", filename="x.png", subfolder="job", overwrite=True)
    assert uploaded.reference == "job/x (1).png"
    body = fake.calls("POST", "/api/upload/image")[0].body
    assert b'name="overwrite"\r\n\r\ntrue' in body and b'filename="x.png"' in body
    assert b'name="subfolder"\r\n\r\njob' in body


def test_models_of_unknown_folder_is_request_error():
    """GET /models/{folder} for an unknown folder is 404 → ComfyRequestError."""
    client, _ = make_client({("GET", "/api/models/checkpoints"): Answer(200, ["a.safetensors"])})
    assert client.list_models("checkpoints") == ["a.safetensors"]
    with pytest.raises(ComfyRequestError):
        client.list_models("nonexistent_folder")
