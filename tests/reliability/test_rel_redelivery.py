"""Guarantees 1 and 2: a job whose worker dies is run again and completes once; a job that
outlives the visibility timeout while its worker lives is not run a second time, and is not lost
either when that worker dies afterwards."""

from __future__ import annotations

from pathlib import Path

from farm_kit import WorkerFactory, executions, path_of, sim_stats, wait_until
from rel_kit import files_of, kill_group, running_on, text2image

from comfyfarm.producer import Farm
from comfyfarm.tasks.settings import Settings


def test_job_of_a_worker_killed_with_sigkill_is_redelivered_and_completes_once(
    farm: Farm, workers: WorkerFactory, start_sim, out_dir: Path
) -> None:
    """SIGKILL of a worker's whole process group mid-job: the job comes back after the
    visibility timeout, the survivor follows the same prompt (ledger), and it ran once."""
    sims = [start_sim("--step-ms", "100", "--load-ms", "0") for _ in range(2)]
    pool = workers.start_many(sims)
    job = farm.submit(text2image(sims[0], steps=30))  # 3 s of GPU time, shared queue
    victim = next(w for w in pool if w.name == running_on(job))
    survivor = next(w for w in pool if w is not victim)

    kill_group(victim)

    result = job.wait(40)
    assert result.status == "succeeded", result.error
    assert result.worker == survivor.name
    assert executions(victim.sim, job.job_id) == 1
    assert job.job_id not in sim_stats(survivor.sim)["executions"]
    [output] = result.outputs
    stored = files_of(out_dir, job.job_id)
    assert output.uri is not None
    assert stored == sorted(
        [f"{job.job_id}/result.json", str(path_of(output.uri).relative_to(out_dir))]
    )
    assert farm.job(job.job_id).result() == result


def test_job_outliving_the_visibility_timeout_is_not_run_twice(
    settings: Settings, workers: WorkerFactory, start_sim
) -> None:
    """A 12 s job on a live worker while another worker sweeps with an 8 s visibility timeout:
    the re-delivered copy finds the lease renewed and does nothing; ComfyUI ran it once.

    The sweeper puts the copy back on the shared queue, where either worker may take it (the
    runner has a free pipeline slot), so the skip is looked for in both logs."""
    sims = [start_sim("--step-ms", "100", "--load-ms", "0") for _ in range(2)]
    long_jobs = {"COMFYFARM_MAX_JOB_SECONDS": "60", "COMFYFARM_VISIBILITY_TIMEOUT": "200"}
    with Farm(settings.with_overrides(max_job_seconds=60.0, visibility_timeout=200.0)) as farm:
        runner = workers.start(sims[0], "long", env=long_jobs)
        job = farm.submit(text2image(sims[0], steps=120))
        assert running_on(job) == "long"
        sweeper = workers.start(sims[1], "sweeper")  # VISIBILITY_TIMEOUT=8: the shortest wins

        skipped = f"job {job.job_id} is running elsewhere"
        wait_until(
            lambda: skipped in runner.log() or skipped in sweeper.log(),
            30,
            f"a worker to log {skipped!r}\n--- sweeper ---\n{sweeper.log()[-2000:]}",
        )
        result = job.wait(40)

    assert result.status == "succeeded", result.error
    assert result.worker == runner.name
    assert executions(sims[0], job.job_id) == 1
    assert job.job_id not in sim_stats(sims[1])["executions"]


def test_job_whose_worker_dies_after_its_copy_was_skipped_is_completed_by_the_watch(
    settings: Settings, workers: WorkerFactory, start_sim
) -> None:
    """The re-delivered copy of a long job is skipped (lease renewed) but leaves a watch; the
    job's worker is then killed: the watch finds the lease gone, follows the prompt on the
    ComfyUI it went to, and the job completes — executed once."""
    sims = [start_sim("--step-ms", "100", "--load-ms", "0") for _ in range(2)]
    long_jobs = {"COMFYFARM_MAX_JOB_SECONDS": "60", "COMFYFARM_VISIBILITY_TIMEOUT": "200"}
    with Farm(settings.with_overrides(max_job_seconds=60.0, visibility_timeout=200.0)) as farm:
        runner = workers.start(sims[0], "long", env=long_jobs)
        job = farm.submit(text2image(sims[0], steps=150))  # 15 s of GPU time
        assert running_on(job) == "long"
        sweeper = workers.start(sims[1], "sweeper")  # VISIBILITY_TIMEOUT=8: re-delivers the job
        skipped = f"job {job.job_id} is running elsewhere"
        wait_until(
            lambda: skipped in runner.log() or skipped in sweeper.log(),
            30,
            f"a worker to log {skipped!r}",
        )
        kill_group(runner)

        result = job.wait(60)

    assert result.status == "succeeded", result.error
    assert result.worker == sweeper.name
    assert executions(sims[0], job.job_id) == 1
    assert job.job_id not in sim_stats(sims[1])["executions"]
