"""A job delivered twice runs once on ComfyUI."""

from __future__ import annotations

from farm_kit import WorkerFactory, executions, sim_stats, wait_until

from producer import Farm
from tasks.keyspace import celery_result_key
from tasks.routing import worker_queue
from workflows import SchemaSource, prepare_jobs


def test_job_delivered_again_after_it_ran_is_collected_not_executed(
    farm: Farm, workers: WorkerFactory, start_sim
) -> None:
    """The same job id delivered again after it finished finds its prompt done on ComfyUI: the
    outputs are collected again (same bytes), the prompt is not executed a second time."""
    sim = start_sim("--step-ms", "1", "--load-ms", "0")
    workers.start(sim)
    [prepared] = prepare_jobs("sd15_text2image", schema=SchemaSource.from_url(sim.url))
    first = farm.submit(prepared).wait(30)
    assert first.status == "succeeded"
    farm.results.delete(celery_result_key(farm.settings.key_prefix, first.job_id))

    again = farm.submit(prepared, job_id=first.job_id).wait(30)

    assert again.status == "succeeded"
    assert executions(sim, first.job_id) == 1
    assert [o.sha256 for o in again.outputs] == [o.sha256 for o in first.outputs]
    assert [o.uri for o in again.outputs] == [o.uri for o in first.outputs]
    assert again.timings.started_at > first.timings.finished_at


def test_copy_delivered_while_the_job_runs_elsewhere_is_skipped(
    farm: Farm, workers: WorkerFactory, start_sim
) -> None:
    """A second copy of a running job, delivered to another worker, sees the job's lease and
    does nothing; the job runs once and succeeds."""
    sims = [start_sim("--step-ms", "40", "--load-ms", "0") for _ in range(2)]
    w0, w1 = workers.start_many(sims)
    [prepared] = prepare_jobs(
        "sd15_text2image", schema=SchemaSource.from_url(sims[0].url), params=["steps=25"]
    )
    job = farm.submit(prepared, queue=worker_queue(w0.name))
    wait_until(lambda: job.status() == "running", 10, "the job to start")

    farm.submit(prepared, job_id=job.job_id, queue=worker_queue(w1.name))

    w1.wait_for_log(f"job {job.job_id} is running elsewhere")
    result = job.wait(30)
    assert result.status == "succeeded" and result.worker == w0.name
    assert executions(sims[0], job.job_id) == 1
    assert job.job_id not in sim_stats(sims[1])["executions"]
