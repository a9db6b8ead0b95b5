"""Many jobs over several workers, each bound to its own ComfyUI."""

from __future__ import annotations

from collections import Counter

from farm_kit import WorkerFactory, executions

from comfyfarm.producer import Farm
from comfyfarm.workflows import SchemaSource, prepare_jobs


def test_sweep_of_twenty_jobs_is_spread_over_three_workers(
    farm: Farm, workers: WorkerFactory, start_sim
) -> None:
    """A 20-job sweep over 3 workers completes, each worker running some, each job once."""
    sims = [start_sim("--step-ms", "20", "--load-ms", "0") for _ in range(3)]
    started = workers.start_many(sims)
    prepared = prepare_jobs(
        "sd15_text2image",
        schema=SchemaSource.from_url(sims[0].url),
        params=["steps=10"],
        sweeps=["seed=1..20"],
    )

    jobs = farm.submit_many(prepared)
    results = [job.wait(60) for job in jobs]

    assert [r.status for r in results] == ["succeeded"] * 20
    assert sorted(r.params["seed"] for r in results) == list(range(1, 21))
    per_worker = Counter(r.worker for r in results)
    assert set(per_worker) == {w.name for w in started}, per_worker
    sim_of = {w.name: w.sim for w in started}
    for result in results:
        assert executions(sim_of[result.worker], result.job_id) == 1
        assert result.comfy_url == sim_of[result.worker].url
