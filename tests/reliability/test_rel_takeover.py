"""Recovery in seconds at the shipped defaults: the job of a worker killed with SIGKILL is taken
over by another worker well before the visibility timeout (95 minutes), and runs once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from farm_kit import Reaper, WorkerFactory, executions, sim_stats
from rel_kit import kill_group, running_on, text2image

from comfyfarm.producer import Farm
from comfyfarm.tasks.settings import Settings

#: The issue's target: taken over (and here: completed) within a minute of the kill.
TAKEOVER_SECONDS = 60.0


@pytest.fixture
def defaults(redis_url: str, key_prefix: str, out_dir: Path) -> Settings:
    """The product's defaults; only where the farm lives is set."""
    return Settings(broker_url=redis_url, storage_url=out_dir.as_uri(), key_prefix=key_prefix)


@pytest.fixture
def default_workers(defaults: Settings, reaper: Reaper) -> Iterator[WorkerFactory]:
    factory = WorkerFactory(defaults.broker_url, defaults.key_prefix, defaults.storage_url)
    yield factory
    factory.stop_all(reaper)


def test_job_of_a_killed_worker_is_taken_over_within_a_minute_at_the_defaults(
    defaults: Settings, default_workers: WorkerFactory, start_sim
) -> None:
    """SIGKILL of a worker's process group (main process and pool) in the middle of an 8 s job,
    at the default visibility timeout: the other worker takes the job over within 60 s,
    collecting the prompt on the ComfyUI it went to; the simulators executed it once."""
    assert defaults.visibility_timeout == 3 * 1800 + 300
    sims = [start_sim("--step-ms", "200", "--load-ms", "0") for _ in range(2)]
    pool = default_workers.start_many(sims)
    with Farm(defaults) as farm:
        job = farm.submit(text2image(sims[0], steps=40))  # 8 s of GPU time, shared queue
        victim = next(w for w in pool if w.name == running_on(job))
        survivor = next(w for w in pool if w is not victim)

        kill_group(victim)
        killed = time.monotonic()
        result = job.wait(TAKEOVER_SECONDS)
        recovered = time.monotonic() - killed

    assert result.status == "succeeded", result.error
    assert result.worker == survivor.name
    assert recovered < TAKEOVER_SECONDS
    assert f"job {job.job_id}: no live worker holds it" in survivor.log()
    assert executions(victim.sim, job.job_id) == 1
    assert job.job_id not in sim_stats(survivor.sim)["executions"]
