"""Per-job ComfyUI log: what the simulator printed while a job's prompt ran is stored beside the
outputs as log.txt and named in the result (real Valkey, real worker, simulator over HTTP)."""

from __future__ import annotations

import subprocess
import sys

import requests
from farm_kit import WorkerFactory, path_of

from comfyfarm.producer import Farm
from comfyfarm.workflows import SchemaSource, prepare_jobs


def test_each_job_gets_its_own_slice_of_the_comfyui_log(
    farm: Farm, workers: WorkerFactory, start_sim
) -> None:
    """Four jobs on one ComfyUI (one waiting in its queue behind the running one): each log.txt
    holds its own prompt's lines and no other job's."""
    sim = start_sim("--step-ms", "1", "--load-ms", "0")
    worker = workers.start(sim)
    prepared = prepare_jobs(
        "sd15_text2image", schema=SchemaSource.from_url(sim.url), sweeps=["seed=1..4"]
    )
    jobs = farm.submit_many(prepared)
    results = [job.wait(30) for job in jobs]
    assert worker.name

    for job, result in zip(jobs, results, strict=True):
        assert result.status == "succeeded", result.error
        assert result.log is not None
        log_file = path_of(result.log)
        assert log_file == path_of(farm.settings.storage_url) / job.job_id / "log.txt"
        text = log_file.read_text()
        assert f"[sim] running prompt {job.job_id}" in text, text
        assert "Prompt executed in" in text, text
        assert all(other.job_id not in text for other in jobs if other is not job), text
        assert result.log == job.result().log  # the producer's copy names it too


def test_a_failed_job_keeps_the_exception_comfyui_printed(
    farm: Farm, workers: WorkerFactory, start_sim
) -> None:
    """A node error's banner from ComfyUI's console is in the failed job's log.txt, and
    `comfyfarm result` names the file."""
    sim = start_sim(
        "--step-ms", "1", "--load-ms", "0",
        "--fault", "node_error:class_type=KSampler,message=CUDA out of memory (simulated)",
    )  # fmt: skip
    workers.start(sim)
    [prepared] = prepare_jobs("sd15_text2image", schema=SchemaSource.from_url(sim.url))
    job = farm.submit(prepared)

    result = job.wait(20)

    assert result.status == "failed" and result.log is not None
    text = path_of(result.log).read_text()
    assert "!!! Exception during processing !!! CUDA out of memory (simulated)" in text
    shown = subprocess.run(
        [sys.executable, "-P", "-m", "comfyfarm", "result", job.job_id],
        env=workers.env(), capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert f"ComfyUI log: {result.log}" in shown.stdout


def test_simulator_serves_comfyuis_log_routes(start_sim) -> None:
    """/internal/logs/raw answers ComfyUI's {entries: [{t, m}], size} and /internal/logs text."""
    sim = start_sim()
    raw = requests.get(f"{sim.url}/internal/logs/raw", timeout=10).json()
    assert set(raw) == {"entries", "size"} and isinstance(raw["entries"], list)
    assert isinstance(requests.get(f"{sim.url}/internal/logs", timeout=10).json(), str)
