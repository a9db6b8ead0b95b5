"""Workers fetch through the doorbell and the atomic script (``worker.safe_fetch``), for real:
real worker processes, the simulator, a real Valkey."""

from __future__ import annotations

from celery import Celery
from farm_kit import WorkerFactory, sim_stats

from comfyfarm.producer import Farm
from comfyfarm.producer.build import SpecBuilder
from comfyfarm.tasks.app import celery_config
from comfyfarm.tasks.doorbell import bell_key
from comfyfarm.tasks.names import RUN_JOB
from comfyfarm.tasks.options import JobOptions
from comfyfarm.tasks.routing import SHARED_QUEUE
from comfyfarm.workflows import prepare_jobs


def test_a_job_published_by_plain_celery_without_a_ring_runs(
    farm: Farm, workers: WorkerFactory, start_sim
) -> None:
    """A message nobody rang for (``send_task`` of a Celery app that is not comfyfarm's) is
    found by the poll."""
    workers.start(start_sim("--job-ms", "50", "--load-ms", "0"))
    [prepared] = prepare_jobs("empty_invert", schema=None, sweeps=["color=3..3"])
    spec = SpecBuilder(farm.settings, JobOptions()).build(prepared)
    foreign = Celery("foreign", broker=farm.settings.broker_url)
    foreign.conf.update(celery_config(farm.settings))

    foreign.send_task(RUN_JOB, args=[spec.to_dict()], task_id=spec.job_id, queue=SHARED_QUEUE)
    result = farm.job(spec.job_id).wait(30)

    assert result.status == "succeeded", result.error
    assert not farm.redis.exists(farm.settings.key_prefix + bell_key(SHARED_QUEUE))


def test_a_burst_to_several_workers_runs_every_job_exactly_once(
    farm: Farm, workers: WorkerFactory, start_sim
) -> None:
    """40 jobs rung for at once, three workers racing for them: each job runs once."""
    sims = [start_sim("--job-ms", "20", "--load-ms", "0") for _ in range(3)]
    workers.start_many(sims)
    jobs = farm.submit_many(prepare_jobs("empty_invert", schema=None, sweeps=["color=1..40"]))

    results = [job.wait(60) for job in jobs]

    assert [r.status for r in results] == ["succeeded"] * len(jobs)
    assert all(r.attempts == 1 for r in results)
    runs = [count for sim in sims for count in sim_stats(sim)["executions"].values()]
    assert sorted(runs) == [1] * len(jobs)
