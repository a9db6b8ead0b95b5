"""A worker consumes only while its ComfyUI answers."""

from __future__ import annotations

import time

from farm_kit import WorkerFactory, executions, wait_until

from comfyfarm.producer import Farm
from comfyfarm.worker.registry import REGISTRY_REFRESH
from comfyfarm.workflows import SchemaSource, prepare_jobs


def test_worker_leaves_jobs_queued_while_comfyui_is_down_and_resumes_when_back(
    farm: Farm, workers: WorkerFactory, start_sim
) -> None:
    """While its ComfyUI is down a worker leaves jobs queued; when it is back they complete."""
    sim = start_sim("--step-ms", "1", "--load-ms", "0")
    worker = workers.start(sim)
    prepared = prepare_jobs(
        "sd15_text2image", schema=SchemaSource.from_url(sim.url), sweeps=["seed=1..3"]
    )

    sim.stop()
    worker.wait_for_log("ComfyUI is unavailable: stopped consuming", timeout=10)
    wait_until(
        lambda: [w.info.health for w in farm.status(ping_timeout=None).workers] == ["down"],
        10,
        "the registry to show the worker's ComfyUI down",
    )
    jobs = farm.submit_many(prepared)
    submitted_at = time.time()
    # A registry write at least half a second after the jobs were queued (a consuming worker
    # takes a job within milliseconds; the registry is rewritten every REGISTRY_REFRESH s while
    # nothing changes): none was taken.
    wait_until(
        lambda: farm.status(ping_timeout=None).workers[0].info.heartbeat > submitted_at + 0.5,
        REGISTRY_REFRESH + 10,
        "a later registry write",
    )
    assert farm.status(ping_timeout=None).queue_depth() == 3
    assert [job.status() for job in jobs] == ["queued"] * 3
    assert "received" not in worker.log().split("stopped consuming", 1)[1]

    sim.start()  # same port: ComfyUI is back
    results = [job.wait(30) for job in jobs]

    assert [r.status for r in results] == ["succeeded"] * 3
    assert all(executions(sim, job.job_id) == 1 for job in jobs)
    assert farm.status(ping_timeout=None).queue_depth() == 0
    assert "ComfyUI is back: consuming" in worker.log()
