"""A job through the real path: producer → Redis → worker process → simulator → storage."""

from __future__ import annotations

import json
from pathlib import Path

import redis
import requests
from farm_kit import WorkerFactory, blake3_of, path_of, png_bytes, wait_until

from comfyfarm.producer import Farm
from comfyfarm.tasks.models import PHASES, JobProgress
from comfyfarm.tasks.schemas import load_schemas
from comfyfarm.workflows import SchemaSource, prepare_jobs


def test_job_reports_progress_and_stores_verified_outputs(
    farm: Farm, workers: WorkerFactory, start_sim, out_dir: Path
) -> None:
    """A job reports rising progress by phase; its files and result.json match its BLAKE3 hashes."""
    # 600 ms of steps, reported every COMFYFARM_PROGRESS_INTERVAL (5 s by default: this job
    # would show one update), here 0.2 s. A phase shorter than the worker's settle time (1 s)
    # is shown only if a periodic update falls due while it lasts.
    sim = start_sim("--step-ms", "60", "--load-ms", "0")
    workers.start(sim, env={"COMFYFARM_PROGRESS_INTERVAL": "0.2"})
    [prepared] = prepare_jobs(
        "sd15_text2image", schema=SchemaSource.from_url(sim.url), params=["steps=10"]
    )
    job = farm.submit(prepared)
    seen: list[JobProgress] = []

    result = job.wait(30, on_progress=seen.append)

    assert result.status == "succeeded", result.error
    percents = [p.percent for p in seen]
    assert percents == sorted(percents) and len(set(percents)) > 2
    phases = [p.phase for p in seen]
    # "submitted" lasts as long as ComfyUI takes to start the prompt (here: at once) and
    # "collecting" as long as the copy of one small image: both may go unseen (the result
    # follows at once); the steps are always seen.
    assert "running" in phases
    ranks = [PHASES.index(phase) for phase in phases]
    assert ranks == sorted(ranks), phases
    assert result.outputs and result.attempts == 1
    for record in result.outputs:
        data = path_of(record.uri or "").read_bytes()
        assert record.mime == "image/png" and data.startswith(b"\x89PNG")
        assert blake3_of(data) == record.hash and len(data) == record.bytes
        beside = path_of(record.uri or "").parent / "result.json"
        stored = json.loads(beside.read_text())
        assert stored["job_id"] == job.job_id and stored["status"] == "succeeded"
        assert stored["outputs"][0]["hash"] == record.hash
    assert job.status() == "succeeded" and job.result() == result


def test_image_to_image_job_uploads_its_input_into_a_job_folder(
    farm: Farm, workers: WorkerFactory, start_sim, tmp_path: Path
) -> None:
    """An image-to-image job's local input goes into comfyfarm/<job_id>/, the job succeeds (so
    LoadImage read the real bytes), and afterwards the file there is emptied (ComfyUI has no
    delete route: clearing means overwriting with nothing)."""
    sim = start_sim("--step-ms", "1", "--load-ms", "0")
    workers.start(sim)
    image = tmp_path / "cat.png"
    image.write_bytes(png_bytes())
    [prepared] = prepare_jobs(
        "sd15_image2image", schema=SchemaSource.from_url(sim.url), params=[f"image={image}"]
    )

    result = farm.submit(prepared).wait(30)

    assert result.status == "succeeded", result.error
    uploaded = requests.get(
        sim.url + "/view",
        params={"filename": "cat.png", "subfolder": f"comfyfarm/{result.job_id}", "type": "input"},
        timeout=5,
    )
    assert uploaded.status_code == 200 and uploaded.content == b""


def test_registry_shows_the_job_a_worker_is_running(
    farm: Farm, workers: WorkerFactory, start_sim
) -> None:
    """While a job runs, the farm status names it as the worker's current job; idle, none."""
    sim = start_sim("--step-ms", "100", "--load-ms", "0")
    workers.start(sim, "gpu7")
    [prepared] = prepare_jobs(
        "sd15_text2image", schema=SchemaSource.from_url(sim.url), params=["steps=12"]
    )
    job = farm.submit(prepared)

    def current() -> str | None:
        [worker] = farm.status(ping_timeout=None).workers
        return worker.info.current_job

    assert wait_until(current, 10, "the registry to show the job") == job.job_id
    [worker] = farm.status(ping_timeout=1.0).workers
    assert worker.info.name == "gpu7" and worker.info.health == "ok"
    assert worker.online and worker.info.comfy_url == sim.url
    assert job.wait(30).status == "succeeded"
    wait_until(lambda: current() is None, 10, "the registry to show the worker idle")


def test_worker_publishes_its_comfyui_schemas_for_producers(
    farm: Farm, workers: WorkerFactory, start_sim
) -> None:
    """A started worker publishes its ComfyUI's schemas; a job prepared against them runs."""
    sim = start_sim("--step-ms", "1", "--load-ms", "0")
    workers.start(sim, "gpu3")

    raw = redis.Redis.from_url(farm.settings.broker_url)  # compressed bytes: no decoding
    [published] = load_schemas(raw, farm.settings.key_prefix)
    raw.close()

    assert published.worker == "gpu3" and published.comfy_url == sim.url
    assert "KSampler" in published.object_info
    assert published.models["checkpoints"] == ["v1-5-pruned-emaonly-fp16.safetensors"]
    schema = SchemaSource.from_object_info(published.object_info, models=published.models)
    [prepared] = prepare_jobs("sd15_text2image", schema=schema, params=["steps=3"])
    assert farm.submit(prepared).wait(30).status == "succeeded"


def test_worker_leaves_the_registry_when_it_shuts_down(
    farm: Farm, workers: WorkerFactory, start_sim
) -> None:
    """A worker stopped with SIGTERM removes its registry entry instead of waiting for the TTL."""
    worker = workers.start(start_sim("--step-ms", "1", "--load-ms", "0"), "gpu5")
    assert [w.info.name for w in farm.status(ping_timeout=None).workers] == ["gpu5"]

    worker.terminate()
    worker.reap()

    assert farm.status(ping_timeout=None).workers == []
