"""Payload models: JSON round trips, validation errors that name the field, versioning."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from comfyfarm.tasks.errors import JobResultError, JobSpecError
from comfyfarm.tasks.models import (
    MAX_PROMPT_BYTES,
    PROGRESS_STATE,
    InputFile,
    JobProgress,
    JobResult,
    JobSpec,
    OutputRecord,
    Timings,
    new_job_id,
)

JOB_ID = "8f14e45f-ceea-467a-9575-8a2b1c3d4e5f"
PROMPT: dict[str, Any] = {
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
    "10": {"class_type": "LoadImage", "inputs": {"image": "placeholder.png"}},
    "9": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "x"}},
}


def full_spec(**changes: Any) -> JobSpec:
    fields: dict[str, Any] = dict(
        job_id=JOB_ID,
        prompt=copy.deepcopy(PROMPT),
        inputs=[InputFile(node_id="10", input_name="image", source="/shared/in/cat.png",
                          filename="cat.png")],
        storage_prefix="renders/2026",
        deadline_seconds=600.0,
        stall_timeout_seconds=60.0,
        required_outputs=["9"],
        webhook_url="https://hooks.example.com/done",
        labels={"team": "lookdev", "batch": "b7"},
        params={"seed": 1, "prompt": "a cat"},
        workflow_name="sd15_txt2img",
        enqueued_at=1_790_000_000.5,
        max_retries=2,
    )  # fmt: skip
    fields.update(changes)
    return JobSpec(**fields)


def test_jobspec_round_trips_through_json() -> None:
    """to_dict → JSON → from_dict gives an equal JobSpec."""
    spec = full_spec()
    again = JobSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec
    assert again.inputs[0].filename == "cat.png"


def test_jobspec_minimal_dict_takes_defaults() -> None:
    """Only job_id and prompt are required."""
    spec = JobSpec.from_dict({"job_id": JOB_ID, "prompt": PROMPT})
    assert spec.version == 1 and spec.inputs == [] and spec.webhook_url is None
    assert spec.deadline_seconds > 0 and spec.max_retries == 3


def test_unknown_keys_are_ignored_but_other_versions_refused() -> None:
    """Additions within a version are tolerated; a different version is not."""
    data = full_spec().to_dict()
    assert JobSpec.from_dict({**data, "future_field": 1}) == full_spec()
    with pytest.raises(JobSpecError) as caught:
        JobSpec.from_dict({**data, "version": 2})
    assert caught.value.field == "version"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"job_id": "8F14E45F-CEEA-467A-9575-8A2B1C3D4E5F"}, "job_id"),
        ({"job_id": "not-a-uuid"}, "job_id"),
        ({"prompt": {}}, "prompt"),
        ({"prompt": {"1": {"inputs": {}}}}, "prompt.1.class_type"),
        ({"prompt": {"1": {"class_type": "X"}}}, "prompt.1.inputs"),
        ({"prompt": {"1": {"class_type": "X", "inputs": {"a": ["7", 0]}}}}, "prompt.1.inputs.a"),
        ({"prompt": {"1": {"class_type": "X", "inputs": {"v": float("nan")}}}}, "prompt"),
        ({"storage_prefix": "../escape"}, "storage_prefix"),
        ({"storage_prefix": "/abs"}, "storage_prefix"),
        ({"deadline_seconds": 0}, "deadline_seconds"),
        ({"stall_timeout_seconds": "60"}, "stall_timeout_seconds"),
        ({"required_outputs": ["99"]}, "required_outputs[0]"),
        ({"webhook_url": "ftp://x/y"}, "webhook_url"),
        ({"labels": {"bad key": "v"}}, "labels"),
        ({"labels": {"k": 3}}, "labels.k"),
        ({"labels": {f"k{i}": "v" for i in range(33)}}, "labels"),
        ({"params": {"blob": "x" * 70_000}}, "params"),
        ({"params": {"obj": object()}}, "params"),
        ({"max_retries": -1}, "max_retries"),
        ({"workflow_name": "w" * 201}, "workflow_name"),
    ],
)
def test_invalid_jobspec_names_the_field(change: dict[str, Any], field: str) -> None:
    """Every kind of bad value raises JobSpecError whose field says where."""
    with pytest.raises(JobSpecError) as caught:
        full_spec(**change)
    assert caught.value.field == field, caught.value


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"node_id": "77"}, "inputs[0].node_id"),
        ({"source": "relative/path.png"}, "inputs[0].source"),
        ({"source": "gopher://x/y"}, "inputs[0].source"),
        ({"filename": "../cat.png"}, "inputs[0].filename"),
        ({"filename": ""}, "inputs[0].filename"),
    ],
)
def test_invalid_input_file_from_dict_names_the_path(change: dict[str, Any], field: str) -> None:
    """Errors in nested inputs carry their index: inputs[0].source."""
    data = full_spec().to_dict()
    data["inputs"][0].update(change)
    with pytest.raises(JobSpecError) as caught:
        JobSpec.from_dict(data)
    assert caught.value.field == field


def test_missing_required_field() -> None:
    """A dict without job_id says so."""
    with pytest.raises(JobSpecError) as caught:
        JobSpec.from_dict({"prompt": PROMPT})
    assert (caught.value.field, caught.value.reason) == ("job_id", "missing")


def test_prompt_size_limit() -> None:
    """A prompt above 8 MiB of JSON is refused."""
    big = copy.deepcopy(PROMPT)
    big["6"]["inputs"]["text"] = "x" * (MAX_PROMPT_BYTES + 1)
    with pytest.raises(JobSpecError, match="limit"):
        full_spec(prompt=big)


def test_input_sources_accept_paths_urls_and_storage_uris() -> None:
    """Absolute paths, http(s) URLs and storage URIs are valid input sources."""
    for source in ("/mnt/shared/a.png", "https://cdn.example.com/a.png", "s3://b/k/a.png",
                   "file:///mnt/a.png", "memory://demo/a.png"):  # fmt: skip
        InputFile(node_id="10", input_name="image", source=source, filename="a.png")


def test_new_job_id_is_canonical() -> None:
    """new_job_id() passes the JobSpec's own job id check."""
    full_spec(job_id=new_job_id())


def test_errors_are_json_safe() -> None:
    """PayloadError.to_dict() carries type, message, field and reason."""
    with pytest.raises(JobSpecError) as caught:
        full_spec(max_retries=500)
    data = json.loads(json.dumps(caught.value.to_dict()))
    assert data["type"] == "JobSpecError" and data["field"] == "max_retries"


def result(**changes: Any) -> JobResult:
    fields: dict[str, Any] = dict(
        job_id=JOB_ID,
        status="succeeded",
        outputs=[
            OutputRecord(node_id="9", kind="images", index=0, filename="x_00001_.png",
                         uri="file:///out/job/9_0_x_00001_.png", bytes=1234,
                         hash="blake3:" + "a" * 64,
                         mime="image/png"),
            OutputRecord(node_id="12", kind="text", index=0, filename="", uri=None, bytes=0,
                         hash="", mime="text/plain", value="a caption"),
        ],
        timings=Timings.measure(enqueued_at=100.0, started_at=103.0, finished_at=110.5,
                                node_durations={"3": 6.5}),
        worker="gpu0", comfy_url="http://127.0.0.1:8188", attempts=1,
        params={"seed": 1}, labels={"batch": "b7"},
    )  # fmt: skip
    fields.update(changes)
    return JobResult(**fields)


def test_jobresult_round_trips_through_json() -> None:
    """A result with a file output and a text value survives JSON."""
    original = result()
    again = JobResult.from_dict(json.loads(json.dumps(original.to_dict())))
    assert again == original
    assert again.timings.queue_seconds == 3.0 and again.timings.run_seconds == 7.5
    assert again.outputs[1].value == "a caption" and again.ok


def test_comfyui_times_round_trip_and_default_to_zero() -> None:
    """ComfyUI's own times of the prompt survive JSON; a result written before them reads 0."""
    timings = Timings(enqueued_at=100.0, started_at=103.0, finished_at=110.5,
                      prompt_started_at=104.25, prompt_finished_at=110.0,
                      comfy_free_since=104.0)  # fmt: skip
    again = JobResult.from_dict(json.loads(json.dumps(result(timings=timings).to_dict())))
    assert again.timings == timings
    older = {k: v for k, v in result().to_dict()["timings"].items() if "comfy" not in k
             and not k.startswith("prompt_")}  # fmt: skip
    assert Timings.from_dict(older).comfy_free_since == 0.0
    with pytest.raises(JobResultError):
        Timings(enqueued_at=1.0, started_at=1.0, finished_at=1.0, comfy_free_since=-1.0)


def test_result_names_its_log_only_when_there_is_one() -> None:
    """`log` round-trips; without one the dict has no `log` key (older readers see no change)."""
    with_log = result(log="file:///out/job/log.txt")
    assert JobResult.from_dict(json.loads(json.dumps(with_log.to_dict()))).log == with_log.log
    assert "log" not in result().to_dict() and JobResult.from_dict(result().to_dict()).log is None


def test_failed_result_carries_the_node_error() -> None:
    """A failed result must have an error with type and message; extra fields are kept."""
    error = {"type": "ExecutionFailed", "message": "boom", "node_id": "3",
             "node_type": "KSampler", "exception_message": "CUDA out of memory"}  # fmt: skip
    failed = result(status="failed", outputs=[], error=error)
    assert JobResult.from_dict(failed.to_dict()).error == error
    with pytest.raises(JobResultError) as caught:
        result(status="failed", error=None)
    assert caught.value.field == "error"
    with pytest.raises(JobResultError):
        result(status="succeeded", error=error)
    with pytest.raises(JobResultError) as caught:
        result(status="failed", error={"message": "no type"})
    assert caught.value.field == "error.type"


def test_result_validation_names_nested_fields() -> None:
    """A bad output or timing inside a result dict is reported with its path."""
    data = result().to_dict()
    data["outputs"][0]["hash"] = "blake3:nothex"
    with pytest.raises(JobResultError) as caught:
        JobResult.from_dict(data)
    assert caught.value.field == "outputs[0].hash"
    data["outputs"][0]["hash"] = ""  # a store kept without digests
    assert JobResult.from_dict(data).outputs[0].hash == ""
    data = result().to_dict()
    data["timings"]["node_durations"] = {"3": -1}
    with pytest.raises(JobResultError) as caught:
        JobResult.from_dict(data)
    assert caught.value.field == "timings.node_durations.3"
    with pytest.raises(JobResultError) as caught:
        JobResult.from_dict({**result().to_dict(), "status": "exploded"})
    assert caught.value.field == "status"


def test_progress_round_trips_and_bounds_percent() -> None:
    """JobProgress survives JSON; percent must stay within 0..100; phases are a fixed set."""
    progress = JobProgress(job_id=JOB_ID, phase="running", node="3", node_type="KSampler",
                           value=5, max=20, percent=31.5, nodes_done=2, nodes_total=7,
                           worker="gpu0")  # fmt: skip
    assert JobProgress.from_dict(json.loads(json.dumps(progress.to_dict()))) == progress
    assert PROGRESS_STATE == "PROGRESS"
    with pytest.raises(JobResultError) as caught:
        JobProgress(job_id=JOB_ID, phase="running", percent=120)
    assert caught.value.field == "percent"
    with pytest.raises(JobResultError):
        JobProgress(job_id=JOB_ID, phase="dreaming")


def test_output_hashes_name_their_algorithm() -> None:
    """An output hash is blake3:<hex> or sha256:<hex>; a bare hex digest or md5 is refused."""
    data = result().to_dict()
    data["outputs"][0]["hash"] = "sha256:" + "b" * 64
    assert JobResult.from_dict(data).outputs[0].sha256 == "b" * 64
    for bad in ("a" * 64, "md5:" + "a" * 32, "blake3:" + "A" * 64):
        data["outputs"][0]["hash"] = bad
        with pytest.raises(JobResultError) as caught:
            JobResult.from_dict(data)
        assert caught.value.field == "outputs[0].hash"


def test_results_written_with_a_bare_sha256_are_still_read() -> None:
    """A result from before BLAKE3 (field sha256: <hex>) reads as hash sha256:<hex>."""
    data = result().to_dict()
    old = data["outputs"][0]
    del old["hash"]
    old["sha256"] = "c" * 64
    del data["outputs"][1]["hash"]
    data["outputs"][1]["sha256"] = ""
    again = JobResult.from_dict(data)
    assert again.outputs[0].hash == "sha256:" + "c" * 64
    assert again.outputs[0].sha256 == "c" * 64 and again.outputs[1].hash == ""
    old["sha256"] = "nothex"
    with pytest.raises(JobResultError) as caught:
        JobResult.from_dict(data)
    assert caught.value.field == "outputs[0].sha256"


def test_json_size_is_the_compact_json_size_and_refuses_what_json_refuses() -> None:
    """json_size measures plain values fast (orjson) with the same answer as the json module,
    and still refuses NaN, lone surrogates and non-JSON objects, naming the field."""
    from comfyfarm.tasks import fields
    from comfyfarm.tasks.errors import JobSpecError

    plain = [{"a": [1, 2.5, True, None, "ünï", {"b": []}], "seed": 2**63 - 1}, [], "x", 0]
    for value in [*plain, {1: "int key"}, {"big": 10**30}]:
        expected = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
        assert fields.json_size(JobSpecError, "f", value, max_bytes=10**6) == expected
    for bad in [float("nan"), {"x": [float("inf")]}, "\udcff", {"s": {1, 2}}]:
        with pytest.raises(JobSpecError, match="f: not JSON-safe"):
            fields.json_size(JobSpecError, "f", bad, max_bytes=10**6)
    with pytest.raises(JobSpecError, match="more than the limit of 5"):
        fields.json_size(JobSpecError, "f", plain[0], max_bytes=5)
