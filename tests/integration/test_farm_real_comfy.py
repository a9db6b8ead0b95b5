"""Behaving right on a real ComfyUI (issue 11), through the real path: producer → Redis → worker
process → simulator shaped like ComfyUI 0.3.64 (or the newer job API generation)."""

from __future__ import annotations

import subprocess
import sys
import uuid

import requests
from farm_kit import WorkerFactory, executions, png_bytes, wait_until

from comfyfarm.producer import Farm
from comfyfarm.workflows import SchemaSource, prepare_jobs

ANIMATION = {
    "1": {
        "class_type": "EmptyImage",
        "inputs": {"width": 64, "height": 64, "batch_size": 3, "color": 255},
    },
    "2": {
        "class_type": "SaveAnimatedWEBP",
        "inputs": {
            "images": ["1", 0],
            "filename_prefix": "anim",
            "fps": 6.0,
            "lossless": False,
            "quality": 80,
            "method": "default",
        },
    },
}


def blank(width: int = 64, color: int = 0) -> dict:
    """EmptyImage → SaveImage: the smallest prompt that writes a file."""
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": width, "height": 64, "batch_size": 1, "color": color},
        },
        "2": {
            "class_type": "SaveImage",
            "inputs": {"images": ["1", 0], "filename_prefix": "blank"},
        },
    }


def test_a_silent_node_longer_than_the_stall_timeout_is_followed_to_success(
    farm: Farm, workers: WorkerFactory, start_sim
) -> None:
    """A node silent for 9 s while ComfyUI lists the prompt as running is no stall: with a 3 s
    stall timeout the job succeeds, once, without being interrupted."""
    sim = start_sim("--step-ms", "1", "--load-ms", "0", "--class-ms", "VAEDecode=9000")
    workers.start(sim)
    [prepared] = prepare_jobs(
        "sd15_text2image", schema=SchemaSource.from_url(sim.url), params=["steps=2"]
    )

    result = farm.submit(prepared, stall_timeout_seconds=3.0).wait(60)

    assert result.status == "succeeded", result.error
    assert result.attempts == 1 and executions(sim, result.job_id) == 1
    assert result.timings.run_seconds >= 9.0


def test_animated_output_is_one_flagged_file_not_a_text_value(
    farm: Farm, workers: WorkerFactory, start_sim
) -> None:
    """SaveAnimatedWEBP's ``animated: [true]`` marks its file animated; no value output."""
    sim = start_sim("--step-ms", "1", "--load-ms", "0")
    workers.start(sim)

    result = farm.submit(ANIMATION).wait(30)

    assert result.status == "succeeded", result.error
    (record,) = result.outputs
    assert record.kind == "images" and record.filename.endswith(".webp")
    assert record.animated and record.uri is not None and record.value is None


def test_a_prompt_comfyui_rejects_reports_every_node_error(
    farm: Farm, workers: WorkerFactory, start_sim
) -> None:
    """A prompt ComfyUI refuses at validation fails with a message naming node, class, input and
    ComfyUI's message, not only "Prompt outputs failed validation"."""
    sim = start_sim("--step-ms", "1", "--load-ms", "0")
    workers.start(sim)

    result = farm.submit(blank(width=0)).wait(30)

    assert result.status == "failed" and result.error is not None
    assert result.error["type"] == "PromptRejected"
    message = result.error["message"]
    assert "node 1 (EmptyImage) input 'width'" in message
    assert "value_smaller_than_min" in message and "smaller than min" in message
    assert result.error["comfy_message"] == "Prompt outputs failed validation"
    (node_error,) = result.error["node_errors"]
    assert node_error["node_id"] == "1" and node_error["input_name"] == "width"


def test_identical_prompts_are_reported_as_cache_hits(
    farm: Farm, workers: WorkerFactory, start_sim
) -> None:
    """The second identical prompt is served from ComfyUI's cache: its outputs say ``cached``
    and carry the same file; the first's do not."""
    sim = start_sim("--step-ms", "1", "--load-ms", "0")
    workers.start(sim)

    first = farm.submit(blank(color=7)).wait(30)
    second = farm.submit(blank(color=7)).wait(30)

    assert first.status == second.status == "succeeded"
    (made,) = first.outputs
    (served,) = second.outputs
    assert not made.cached and served.cached
    assert served.filename == made.filename and served.hash == made.hash


def test_status_names_a_job_waiting_in_comfyuis_queue_as_waiting(
    farm: Farm, workers: WorkerFactory, start_sim
) -> None:
    """While another client's prompt holds ComfyUI, our submitted job waits in ComfyUI's queue:
    ``comfyfarm status`` says so instead of calling it running; then it runs and succeeds."""
    sim = start_sim("--step-ms", "1", "--load-ms", "0", "--class-ms", "ImageInvert=6000")
    workers.start(sim)
    foreign = {
        **blank(color=1),
        "3": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "x"}},
    }
    answer = requests.post(
        sim.url + "/prompt", json={"prompt": foreign, "prompt_id": str(uuid.uuid4())}, timeout=5
    )
    assert answer.status_code == 200, answer.text
    job = farm.submit(blank(color=2))

    def phase() -> str | None:
        progress = job.progress()
        return progress.phase if progress is not None else None

    wait_until(lambda: phase() == "submitted", 10, "the job to be submitted to ComfyUI")
    done = subprocess.run(
        [sys.executable, "-P", "-m", "comfyfarm", "status"],
        env=workers.env(), capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )  # fmt: skip

    assert f"waiting in ComfyUI's queue {job.job_id}" in done.stdout, done.stdout
    assert f"running {job.job_id}" not in done.stdout
    assert job.wait(30).status == "succeeded"


def test_newer_comfyui_is_reconciled_through_its_job_api(
    farm: Farm, workers: WorkerFactory, start_sim
) -> None:
    """On a newer ComfyUI (``/api/jobs``) a silent prompt is reconciled with
    ``GET /api/jobs/{id}`` instead of /queue and /history, and the job succeeds."""
    sim = start_sim(
        "--comfy-version", "0.4.2", "--gpus", "2", "--step-ms", "1", "--load-ms", "0",
        "--class-ms", "ImageInvert=2500", "--access-log", "--log-level", "info",
    )  # fmt: skip
    workers.start(sim)
    prompt = {
        **blank(color=3),
        "3": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "x"}},
    }

    result = farm.submit(prompt, stall_timeout_seconds=1.0).wait(30)

    assert result.status == "succeeded", result.error
    log = list(sim.proc.output)  # type: ignore[union-attr]
    assert any(f"GET /api/jobs/{result.job_id}" in line for line in log)
    # The job log reads the queue twice right after the POST (comfy/console_log.py prompts_ahead:
    # before and after the log ring, to see a consistent pair); the reconciles of the silent
    # 2.5 s node (stall timeout 1 s, so at least two) never read it.
    assert sum("GET /api/queue" in line or "GET /queue" in line for line in log) <= 2


def test_inputs_of_a_rejected_job_are_emptied_too(
    farm: Farm, workers: WorkerFactory, start_sim, tmp_path
) -> None:
    """A job ComfyUI rejects after its input was uploaded leaves no image behind: the file in
    comfyfarm/<job_id>/ is emptied (ComfyUI offers no delete route)."""
    sim = start_sim("--step-ms", "1", "--load-ms", "0")
    workers.start(sim)
    image = tmp_path / "cat.png"
    image.write_bytes(png_bytes())
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "placeholder.png"}},
        "2": {
            "class_type": "ImageScale",
            "inputs": {
                "image": ["1", 0],
                "upscale_method": "nearest-exact",
                "width": -1,
                "height": 8,
                "crop": "disabled",
            },
        },  # fmt: skip
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "s"}},
    }

    result = farm.submit(prompt, inputs=[("1", "image", str(image))]).wait(30)

    assert result.status == "failed" and result.error is not None
    assert result.error["type"] == "PromptRejected" and "input 'width'" in result.error["message"]
    left = requests.get(
        sim.url + "/view",
        params={"filename": "cat.png", "subfolder": f"comfyfarm/{result.job_id}", "type": "input"},
        timeout=5,
    )
    assert left.status_code == 200 and left.content == b""
