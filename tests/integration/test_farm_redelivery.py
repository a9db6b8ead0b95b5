"""A job delivered twice runs once on ComfyUI."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from farm_kit import WorkerFactory, executions, sim_stats, wait_until

from comfyfarm.producer import Farm
from comfyfarm.tasks.keys import Lease, lease_key
from comfyfarm.tasks.keyspace import celery_result_key
from comfyfarm.tasks.models import new_job_id
from comfyfarm.tasks.routing import worker_queue
from comfyfarm.workflows import SchemaSource, prepare_jobs

SHORT_LEASE = {"COMFYFARM_LEASE_SECONDS": "1.5"}


def test_job_delivered_again_after_it_ran_is_collected_not_executed(
    farm: Farm, workers: WorkerFactory, start_sim
) -> None:
    """A finished job delivered again is collected again (same outputs), not executed again."""
    sim = start_sim("--step-ms", "1", "--load-ms", "0")
    workers.start(sim)
    [prepared] = prepare_jobs("sd15_text2image", schema=SchemaSource.from_url(sim.url))
    first = farm.submit(prepared).wait(30)
    assert first.status == "succeeded"
    farm.results.delete(celery_result_key(farm.settings.key_prefix, first.job_id))

    again = farm.submit(prepared, job_id=first.job_id).wait(30)

    assert again.status == "succeeded"
    assert executions(sim, first.job_id) == 1
    assert [o.hash for o in again.outputs] == [o.hash for o in first.outputs]
    assert [o.uri for o in again.outputs] == [o.uri for o in first.outputs]
    assert again.timings.started_at > first.timings.finished_at


def test_copy_delivered_while_the_job_runs_elsewhere_is_skipped(
    farm: Farm, workers: WorkerFactory, start_sim
) -> None:
    """A copy of a running job delivered to another worker sees the lease and does nothing."""
    sims = [start_sim("--step-ms", "100", "--load-ms", "0") for _ in range(2)]
    w0, w1 = workers.start_many(sims, env=SHORT_LEASE)  # renewed every 0.5 s
    # 4 s of steps: the job shows "running" within a second (the worker's progress settle
    # time) and must still run when its copy reaches the other worker.
    [prepared] = prepare_jobs(
        "sd15_text2image", schema=SchemaSource.from_url(sims[0].url), params=["steps=40"]
    )
    job = farm.submit(prepared, queue=worker_queue(w0.name))
    wait_until(lambda: job.status() == "running", 10, "the job to start")

    farm.submit(prepared, job_id=job.job_id, queue=worker_queue(w1.name))

    w1.wait_for_log(f"job {job.job_id} is running elsewhere")
    result = job.wait(30)
    assert result.status == "succeeded" and result.worker == w0.name
    assert executions(sims[0], job.job_id) == 1
    assert job.job_id not in sim_stats(sims[1])["executions"]


def test_job_whose_lease_holder_died_is_taken_over(
    farm: Farm, workers: WorkerFactory, start_sim
) -> None:
    """A job re-queued while a dead holder's lease lives on runs once that lease expires."""
    sim = start_sim("--step-ms", "1", "--load-ms", "0")
    workers.start(sim)
    [prepared] = prepare_jobs("sd15_text2image", schema=SchemaSource.from_url(sim.url))
    job_id = new_job_id()  # chosen up front: the dead holder's lease exists before the job
    ghost = Lease(farm.redis, lease_key(farm.settings.key_prefix, job_id), owner="dead", ttl=2)
    assert ghost.acquire()

    result = farm.submit(prepared, job_id=job_id).wait(30)

    assert result.status == "succeeded" and result.attempts == 1
    assert executions(sim, job_id) == 1
    assert ghost.holder() is None  # released by the worker that took over


def test_job_whose_pool_child_is_killed_is_requeued_and_finished_once(
    farm: Farm, workers: WorkerFactory, start_sim
) -> None:
    """A pool child killed mid-job re-queues it; the next run follows the same prompt."""
    sim = start_sim("--step-ms", "60", "--load-ms", "0")
    worker = workers.start(sim, env=SHORT_LEASE)
    [prepared] = prepare_jobs(
        "sd15_text2image", schema=SchemaSource.from_url(sim.url), params=["steps=20"]
    )
    job = farm.submit(prepared)
    wait_until(
        lambda: (p := job.progress()) is not None and p.phase == "running", 10, "the job to run"
    )

    for child in child_pids(worker.proc.pid):  # the job's process (and an idle pipeline one)
        os.kill(child, signal.SIGKILL)

    result = job.wait(30)
    assert result.status == "succeeded", result.error
    assert executions(sim, job.job_id) == 1
    assert "WorkerLostError" in worker.log() or "exited prematurely" in worker.log()


def child_pids(pid: int) -> list[int]:
    """The direct children of ``pid`` (Linux /proc)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        found += [int(child) for child in children]
    return found
