"""Guarantee 8: SIGTERM to a worker during a job (a deploy) never loses the job."""

from __future__ import annotations

import signal

from farm_kit import WorkerFactory, executions, sim_stats
from rel_kit import running_on, text2image

from comfyfarm.producer import Farm

SOFT = {"REMAP_SIGTERM": "SIGQUIT"}  # as in docker-compose.yml


def test_warm_shutdown_finishes_the_running_job(
    farm: Farm, workers: WorkerFactory, start_sim
) -> None:
    """Plain SIGTERM: the worker finishes its job, then exits."""
    sim = start_sim("--step-ms", "100", "--load-ms", "0")
    worker = workers.start(sim)
    job = farm.submit(text2image(sim, steps=20))
    running_on(job)

    worker.terminate()

    result = job.wait(30)
    assert result.status == "succeeded" and result.worker == worker.name, result.error
    assert executions(sim, job.job_id) == 1
    assert worker.proc.process is not None and worker.proc.process.wait(20) is not None


def test_soft_shutdown_finishes_the_running_job(
    farm: Farm, workers: WorkerFactory, start_sim
) -> None:
    """SIGTERM remapped to SIGQUIT (soft shutdown): a job shorter than the soft-shutdown
    timeout finishes on this worker."""
    sim = start_sim("--step-ms", "100", "--load-ms", "0")
    worker = workers.start(sim, env=SOFT)
    job = farm.submit(text2image(sim, steps=20))
    running_on(job)

    worker.terminate()

    result = job.wait(30)
    assert result.status == "succeeded" and result.worker == worker.name, result.error
    assert executions(sim, job.job_id) == 1


def test_cold_shutdown_hands_the_job_back_and_another_worker_finishes_it(
    farm: Farm, workers: WorkerFactory, start_sim
) -> None:
    """A second SIGTERM during the soft shutdown (an impatient deploy) re-queues the job; the
    other worker follows the prompt on the first ComfyUI, which ran it once."""
    sims = [start_sim("--step-ms", "100", "--load-ms", "0") for _ in range(2)]
    pool = workers.start_many(sims, env=SOFT)
    job = farm.submit(text2image(sims[0], steps=40))
    leaving = next(w for w in pool if w.name == running_on(job))
    staying = next(w for w in pool if w is not leaving)

    leaving.terminate()
    leaving.wait_for_log("Initiating Soft Shutdown", timeout=10)
    leaving.proc.signal(signal.SIGQUIT)  # cold: no more waiting

    result = job.wait(40)
    assert result.status == "succeeded", result.error
    assert result.worker == staying.name
    assert executions(leaving.sim, job.job_id) == 1
    assert job.job_id not in sim_stats(staying.sim)["executions"]
