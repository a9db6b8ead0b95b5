"""The ComfyUI client against the simulator over real sockets: outputs, errors, faults, restarts."""

from __future__ import annotations

import hashlib
import struct
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import requests
from comfy_traces import PNG_MAGIC, http_calls, load

from comfyfarm.comfy import events as ev
from comfyfarm.comfy.client import ComfyClient
from comfyfarm.comfy.errors import (
    ComfyServerError,
    ComfyUnavailable,
    ExecutionFailed,
    ExecutionInterrupted,
    PromptLost,
    PromptRejected,
    PromptTimeout,
    UnsafeOutputPath,
)
from comfyfarm.comfy.outputs import OutputFile, OutputValue, collect_outputs, output_files
from comfyfarm.comfy.state import PromptState
from comfyfarm.comfy.tracker import PromptOutcome, follow_prompt
from comfyfarm.comfy.ws import EventStream

SLOW = ("--step-ms", "1", "--class-ms", "ImageBlur=400")


class CountingStream(EventStream):
    """An EventStream that counts its (re)connections."""

    connects = 0

    def connect(self, timeout: float = 10.0) -> None:
        self.connects += 1
        super().connect(timeout)


@dataclass
class Comfy:
    client: ComfyClient
    stream: CountingStream
    client_id: str

    def submit(self, prompt: dict, **kwargs) -> str:
        prompt_id = str(uuid.uuid4())
        self.client.queue_prompt(prompt, prompt_id=prompt_id, client_id=self.client_id, **kwargs)
        return prompt_id

    def follow(self, prompt_id: str, *, seconds: float = 10.0, **kwargs) -> PromptOutcome:
        options = {"stall_timeout": 5.0, "reconnect_delay": 0.1, **kwargs}
        deadline = time.monotonic() + seconds
        return follow_prompt(self.client, self.stream, prompt_id, deadline=deadline, **options)

    def run(self, prompt: dict, **kwargs) -> PromptOutcome:
        return self.follow(self.submit(prompt), **kwargs)


@pytest.fixture
def connect() -> Iterator[Callable[..., Comfy]]:
    """Factory: a client plus a connected WebSocket for a simulator URL (closed after the test)."""
    opened: list[Comfy] = []

    def make(url: str) -> Comfy:
        client_id = str(uuid.uuid4())
        comfy = Comfy(ComfyClient(url, timeout=5), CountingStream(url, client_id), client_id)
        comfy.stream.connect(timeout=5)
        opened.append(comfy)
        return comfy

    yield make
    for comfy in opened:
        comfy.stream.close()
        comfy.client.close()


@pytest.fixture
def comfy(sim, connect) -> Comfy:
    return connect(sim.url)


def set_faults(url: str, body: dict) -> dict:
    response = requests.post(f"{url}/_sim/faults", json=body, timeout=5)
    response.raise_for_status()
    return response.json()


def save(color: int | None = None, batch: int = 1, node: str = "SaveImage") -> dict:
    color = uuid.uuid4().int % 0xFFFFFF if color is None else color
    image = {"width": 32, "height": 32, "batch_size": batch, "color": color}
    output = {"images": ["1", 0]}
    if node == "SaveImage":
        output["filename_prefix"] = "it/comfy"
    return {
        "1": {"class_type": "EmptyImage", "inputs": image},
        "2": {"class_type": node, "inputs": output},
    }


def blurred(blurs: int = 2) -> dict:
    """EmptyImage -> ImageBlur x N -> PreviewImage; slow when ImageBlur has a class cost."""
    color = uuid.uuid4().int % 0xFFFFFF
    prompt = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": color},
        }
    }
    previous = "1"
    for index in range(blurs):
        node = str(10 + index)
        prompt[node] = {
            "class_type": "ImageBlur",
            "inputs": {"image": [previous, 0], "blur_radius": 3, "sigma": 1.0},
        }
        previous = node
    prompt["99"] = {"class_type": "PreviewImage", "inputs": {"images": [previous, 0]}}
    return prompt


def tiny_png(shade: int) -> bytes:
    width, height = 4, 3
    raw = b"".join(b"\x00" + bytes([shade]) * (width * 3) for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        PNG_MAGIC
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def on_node(class_node: str, action: Callable[[], None]) -> Callable[[ev.Event], None]:
    """An on_event callback that runs ``action`` once, when node ``class_node`` starts."""
    done = []

    def callback(event: ev.Event) -> None:
        if isinstance(event, ev.Executing) and event.node == class_node and not done:
            done.append(True)
            action()

    return callback


# -- success paths ---------------------------------------------------------------------------


def test_success_downloads_the_output_with_matching_sha256(comfy, tmp_path):
    """A SaveImage run: history output in a subfolder, streamed download, same bytes as /view."""
    outcome = comfy.run(save())
    (output,) = output_files(outcome.history.outputs)
    assert output.subfolder == "it" and output.type == "output"
    assert set(outcome.node_durations) == {"1", "2"} and outcome.cached_nodes == []
    dest = tmp_path / output.relative_path
    size = comfy.client.download(output, dest)
    data = dest.read_bytes()
    assert size == len(data) and data.startswith(PNG_MAGIC)
    streamed = b"".join(comfy.client.iter_output(output, chunk_size=64))
    assert hashlib.sha256(streamed).hexdigest() == hashlib.sha256(data).hexdigest()


def test_cached_rerun_reports_cached_nodes_and_the_same_file(comfy):
    """The identical prompt again: everything cached, same output file, no node durations."""
    prompt = save()
    first = comfy.run(prompt)
    second = comfy.run(prompt)
    assert second.cached_nodes == ["1", "2"] and second.node_durations == {}
    assert second.history.outputs == first.history.outputs


def test_batch_gives_one_file_per_image(comfy):
    """batch_size 3 gives three files of one node, all downloadable."""
    files = output_files(comfy.run(save(batch=3)).history.outputs)
    assert [f.index for f in files] == [0, 1, 2]
    assert len({f.filename for f in files}) == 3
    for output in files:
        assert b"".join(comfy.client.iter_output(output)).startswith(PNG_MAGIC)


def test_preview_output_is_a_temp_file(comfy):
    """PreviewImage writes to temp; the file is fetched with type=temp."""
    (preview,) = output_files(comfy.run(save(node="PreviewImage")).history.outputs)
    assert preview.type == "temp"
    assert b"".join(comfy.client.iter_output(preview)).startswith(PNG_MAGIC)


def test_every_output_kind_is_collected(comfy):
    """Animated WEBP (a file flagged animated, no value of its own), audio file and text value
    from one prompt."""
    prompt = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 16, "height": 16, "batch_size": 2, "color": 5},
        },
        "2": {
            "class_type": "SaveAnimatedWEBP",
            "inputs": {
                "images": ["1", 0],
                "filename_prefix": "anim",
                "fps": 6.0,
                "lossless": True,
                "quality": 80,
                "method": "default",
            },
        },
        "3": {"class_type": "EmptyLatentAudio", "inputs": {"seconds": 1.0, "batch_size": 1}},
        "4": {
            "class_type": "VAELoader",
            "inputs": {"vae_name": "vae-ft-mse-840000-ema-pruned.safetensors"},
        },
        "5": {"class_type": "VAEDecodeAudio", "inputs": {"samples": ["3", 0], "vae": ["4", 0]}},
        "6": {"class_type": "SaveAudio", "inputs": {"audio": ["5", 0], "filename_prefix": "au/x"}},
        "7": {"class_type": "PrimitiveString", "inputs": {"value": "hello"}},
        "8": {"class_type": "PreviewAny", "inputs": {"source": ["7", 0]}},
    }
    collected = collect_outputs(comfy.run(prompt).history.outputs)
    kinds = {(c.node_id, c.kind, type(c).__name__) for c in collected}
    assert kinds == {
        ("2", "images", "OutputFile"),
        ("6", "audio", "OutputFile"),
        ("8", "text", "OutputValue"),
    }
    assert [c.animated for c in collected if c.node_id == "2" and isinstance(c, OutputFile)] == [
        True
    ]
    assert OutputValue("8", "text", 0, "hello") in collected
    audio = next(c for c in collected if isinstance(c, OutputFile) and c.kind == "audio")
    assert audio.subfolder == "au" and audio.filename.endswith(".flac")


def test_upload_renames_on_collision_and_feeds_loadimage(comfy):
    """Same name + other bytes gives 'name (1).png'; LoadImage reads the answered reference."""
    subfolder = f"job-{uuid.uuid4().hex[:8]}"
    first = comfy.client.upload_image(tiny_png(10), filename="in.png", subfolder=subfolder)
    again = comfy.client.upload_image(tiny_png(10), filename="in.png", subfolder=subfolder)
    other = comfy.client.upload_image(tiny_png(99), filename="in.png", subfolder=subfolder)
    assert first.reference == again.reference == f"{subfolder}/in.png"
    assert other.name == "in (1).png"
    forced = comfy.client.upload_image(
        tiny_png(50), filename="in.png", subfolder=subfolder, overwrite=True
    )
    assert forced.name == "in.png"
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": other.reference}},
        "2": {
            "class_type": "ImageScale",
            "inputs": {
                "image": ["1", 0],
                "upscale_method": "bilinear",
                "width": 8,
                "height": 6,
                "crop": "disabled",
            },
        },
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "up"}},
    }
    assert len(output_files(comfy.run(prompt).history.outputs)) == 1


# -- rejections and failures -------------------------------------------------------------------


def recorded_rejections() -> list[dict]:
    return [
        call
        for call in http_calls(load("06"), "POST", "/prompt")
        if "prompt" in (call.get("request_json") or {}) and call["status"] == 400
    ]


def test_validation_errors_match_the_recorded_comfyui_answers(comfy):
    """Every recorded 400 case of trace 06 is rejected with the same types and input names."""
    for call in recorded_rejections():
        recorded = call["response_json"]
        with pytest.raises(PromptRejected) as caught:
            comfy.submit(call["request_json"]["prompt"])
        error = caught.value
        assert error.error_type == recorded["error"]["type"], call["note"]
        expected = [
            (node_id, e["type"], e["extra_info"].get("input_name"), entry["class_type"])
            for node_id, entry in recorded["node_errors"].items()
            for e in entry["errors"]
        ]
        got = [(n.node_id, n.error_type, n.input_name, n.class_type) for n in error.node_errors]
        assert got == expected, call["note"]


def test_partial_accept_is_rejected_and_dequeued(start_sim, connect):
    """One valid and one invalid output: PromptRejected(partial=True), and the job never runs."""
    sim = start_sim(*SLOW)
    busy, comfy = connect(sim.url), connect(sim.url)
    blocker = busy.submit(blurred())  # keeps the partial prompt pending until it is cancelled
    partial = next(
        c for c in http_calls(load("06"), "POST", "/prompt") if c["note"].startswith("two outputs")
    )
    prompt_id = str(uuid.uuid4())
    with pytest.raises(PromptRejected) as caught:
        comfy.client.queue_prompt(
            partial["request_json"]["prompt"], prompt_id=prompt_id, client_id=comfy.client_id
        )
    assert caught.value.partial
    assert [n.input_name for n in caught.value.node_errors] == ["upscale_method"]
    assert comfy.client.lookup(prompt_id).state is PromptState.UNKNOWN
    assert busy.follow(blocker).history.succeeded


def test_runtime_error_is_execution_failed(comfy):
    """LoadImage of a file that is not an image fails at execution (trace 07's case)."""
    bad = comfy.client.upload_image(b"this is not a png at all", filename="corrupt.png")
    prompt = {
        "3": {"class_type": "LoadImage", "inputs": {"image": bad.reference}},
        "5": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "e"}},
    }
    with pytest.raises(ExecutionFailed) as caught:
        comfy.run(prompt)
    assert (caught.value.node_id, caught.value.node_type) == ("3", "LoadImage")
    assert caught.value.exception_type == "PIL.UnidentifiedImageError"


def test_prompt_5xx_is_a_server_error(sim, comfy):
    """POST /prompt answering 500 is ComfyServerError (retryable)."""
    set_faults(sim.url, {"prompt_5xx": {"times": 1}})
    with pytest.raises(ComfyServerError):
        comfy.submit(save())


def test_garbage_history_is_unavailable_with_a_reason(sim, comfy):
    """/history answering HTML, garbage, a truncated or an empty body is ComfyUnavailable."""
    reasons = {}
    for mode in ("html", "garbage", "truncated", "empty"):
        set_faults(sim.url, {"garbage": {"route": "/history", "mode": mode, "times": 1}})
        with pytest.raises(ComfyUnavailable) as caught:
            comfy.client.get_history(str(uuid.uuid4()))
        reasons[mode] = caught.value.reason
    assert reasons["html"].startswith("expected JSON from /api/history/")
    assert reasons["html"].endswith("got text/html")
    assert all("/api/history/" in reason for reason in reasons.values())


def test_view_500_leaves_no_partial_download(sim, comfy, tmp_path):
    """A failing /view raises ComfyServerError and leaves nothing at the destination."""
    (output,) = output_files(comfy.run(save()).history.outputs)
    set_faults(sim.url, {"view_500": {"times": 1}})
    with pytest.raises(ComfyServerError):
        comfy.client.download(output, tmp_path / "a.png")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("mode", ["dotdot", "absolute", "nul", "subfolder"])
def test_malicious_output_names_are_refused(sim, comfy, mode, tmp_path):
    """Unsafe names in history are refused before any file is fetched or written."""
    set_faults(sim.url, {"evil_output": {"mode": mode}})
    outcome = comfy.run(save())
    with pytest.raises(UnsafeOutputPath):
        collect_outputs(outcome.history.outputs)
    (name, items), *_ = outcome.history.outputs["2"].items()
    item = items[0]
    forged = OutputFile("2", name, 0, item["filename"], item["subfolder"], item["type"])
    with pytest.raises(UnsafeOutputPath):
        comfy.client.download(forged, tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


# -- interrupt, queue, lookup ------------------------------------------------------------------


def test_interrupt_stops_only_our_running_prompt(start_sim, connect):
    """A targeted interrupt stops our prompt; another client's prompt queued behind it runs."""
    sim = start_sim(*SLOW)
    ours, theirs = connect(sim.url), connect(sim.url)
    mine = ours.submit(blurred())
    other = theirs.submit(save())
    stop = on_node("10", lambda: ours.client.interrupt(mine))
    with pytest.raises(ExecutionInterrupted) as caught:
        ours.follow(mine, on_event=stop)
    assert caught.value.node_type == "ImageBlur"
    assert theirs.follow(other).history.succeeded


def test_interrupt_for_another_id_leaves_the_running_prompt_alone(start_sim, connect):
    """Interrupting an id that is not running is a no-op for the running prompt."""
    sim = start_sim(*SLOW)
    comfy = connect(sim.url)
    mine = comfy.submit(blurred())
    poke = on_node("10", lambda: comfy.client.interrupt(str(uuid.uuid4())))
    assert comfy.follow(mine, on_event=poke).history.succeeded


def test_queue_delete_removes_only_the_pending_prompt(start_sim, connect):
    """Deleting a pending prompt dequeues it; deleting the running one changes nothing."""
    sim = start_sim(*SLOW)
    first, second = connect(sim.url), connect(sim.url)
    running = first.submit(blurred())
    pending = second.submit(save())
    assert first.client.lookup(pending).state is PromptState.PENDING
    first.client.delete_from_queue([pending, running])
    assert first.client.lookup(pending).state is PromptState.UNKNOWN
    assert pending not in first.client.get_queue().pending
    assert first.follow(running).history.succeeded


@pytest.mark.parametrize("jobs_api", [False, True], ids=["queue+history", "jobs-api"])
def test_lookup_reports_pending_running_done_and_unknown(start_sim, connect, jobs_api):
    """lookup() tells the four states apart, with and without /api/jobs."""
    sim = start_sim(*SLOW, *(["--jobs-api"] if jobs_api else []))
    comfy = connect(sim.url)
    assert comfy.client.has_jobs_api is jobs_api
    running = comfy.submit(blurred(blurs=1))
    pending = comfy.submit(save())
    states = {}
    watch = on_node("10", lambda: states.update(r=comfy.client.lookup(running).state))
    states["p"] = comfy.client.lookup(pending).state
    comfy.follow(running, on_event=watch)
    done = comfy.client.lookup(running)
    assert states == {"p": PromptState.PENDING, "r": PromptState.RUNNING}
    assert done.state is PromptState.DONE and done.history.succeeded
    assert comfy.client.lookup(str(uuid.uuid4())).state is PromptState.UNKNOWN


def test_cancel_with_the_jobs_api(start_sim, connect):
    """cancel() uses /api/jobs/{id}/cancel when the server has it: running prompt interrupted."""
    sim = start_sim(*SLOW, "--jobs-api")
    comfy = connect(sim.url)
    mine = comfy.submit(blurred())
    with pytest.raises(ExecutionInterrupted):
        comfy.follow(mine, on_event=on_node("10", lambda: comfy.client.cancel(mine)))


# -- sockets, restarts, stalls -----------------------------------------------------------------


def test_dropped_socket_is_reconnected_and_the_prompt_completes(start_sim, connect):
    """All sockets cut mid-job (fault drop_ws): reconnect, reconcile, finish normally."""
    sim = start_sim(*SLOW, "--fault", "drop_ws:after_ms=200,times=1")
    comfy = connect(sim.url)
    outcome = comfy.run(blurred())
    assert outcome.history.succeeded
    assert comfy.stream.connects == 2
    faults = requests.get(f"{sim.url}/_sim/faults", timeout=5).json()
    assert faults["faults"]["drop_ws"]["fired"] == 1


def test_restart_mid_job_loses_the_prompt(start_sim, connect):
    """ComfyUI restarted while our prompt ran: it no longer knows it, PromptLost (retryable)."""
    sim = start_sim("--step-ms", "1", "--class-ms", "ImageBlur=3000")
    comfy = connect(sim.url)
    mine = comfy.submit(blurred(blurs=1))
    with pytest.raises(PromptLost):
        comfy.follow(mine, on_event=on_node("10", sim.restart))
    assert comfy.stream.connects >= 2


def test_crash_without_restart_is_unavailable(start_sim, connect):
    """ComfyUI crashed and stays down past the reconnect budget: ComfyUnavailable."""
    sim = start_sim(*SLOW, "--fault", "crash:after_ms=100")
    comfy = connect(sim.url)
    mine = comfy.submit(blurred())
    started = time.monotonic()
    with pytest.raises(ComfyUnavailable) as caught:
        comfy.follow(mine, reconnect_attempts=3, reconnect_delay=0.05)
    assert time.monotonic() - started < 5
    assert "not back after" in caught.value.reason


@pytest.mark.parametrize("jobs_api", [False, True], ids=["queue+history", "jobs-api"])
def test_hung_prompt_times_out_as_a_stall(start_sim, connect, jobs_api):
    """A job that stops progressing (fault hang) ends in PromptTimeout(stall) on time."""
    sim = start_sim("--step-ms", "1", "--fault", "hang", *(["--jobs-api"] if jobs_api else []))
    comfy = connect(sim.url)
    started = time.monotonic()
    with pytest.raises(PromptTimeout) as caught:
        comfy.run(save(), stall_timeout=0.3, max_stall=0.9)
    elapsed = time.monotonic() - started
    assert caught.value.kind == "stall"
    assert 0.9 <= caught.value.seconds and elapsed < 3


def test_deadline_while_queued_behind_a_hung_job(start_sim, connect):
    """Our prompt pending behind a hung one is not a stall; the deadline ends the wait."""
    sim = start_sim("--step-ms", "1", "--fault", "hang:nth=1")
    first, ours = connect(sim.url), connect(sim.url)
    first.submit(save())
    mine = ours.submit(save())
    with pytest.raises(PromptTimeout) as caught:
        ours.follow(mine, seconds=1.0, stall_timeout=0.2, max_stall=0.4)
    assert caught.value.kind == "deadline"
