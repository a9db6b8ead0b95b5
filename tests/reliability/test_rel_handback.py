"""A job a worker holds but cannot start, because its ComfyUI hangs, runs on another worker now.

At the shipped defaults a hung prompt keeps its pool process for the stall timeout (2 minutes).
A message the worker reserved behind it (here: a job due after a countdown, as a retry or a watch
is) would wait as long, and the takeover leaves it alone since a live worker holds it. The
worker hands it back to its queue instead (``worker.handback``) and another worker runs it, once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from farm_kit import Reaper, WorkerFactory, executions
from rel_kit import arm, running_on, text2image

from comfyfarm.producer import Farm
from comfyfarm.producer.build import build_spec
from comfyfarm.tasks.names import RUN_JOB
from comfyfarm.tasks.routing import SHARED_QUEUE
from comfyfarm.tasks.settings import Settings
from comfyfarm.worker.handback import POOL_WAIT_SECONDS

#: The reserved job's countdown: long enough for the hanging job to reach ComfyUI first.
COUNTDOWN = 4.0
#: Well under the stall timeout (120 s) that would free the hung worker's pool process.
PROMPTLY = COUNTDOWN + POOL_WAIT_SECONDS + 20.0


@pytest.fixture
def defaults(redis_url: str, key_prefix: str, out_dir: Path) -> Settings:
    """The product's defaults; only where the farm lives is set."""
    return Settings(broker_url=redis_url, storage_url=out_dir.as_uri(), key_prefix=key_prefix)


@pytest.fixture
def default_workers(defaults: Settings, reaper: Reaper) -> Iterator[WorkerFactory]:
    factory = WorkerFactory(defaults.broker_url, defaults.key_prefix, defaults.storage_url)
    yield factory
    factory.stop_all(reaper)


def test_a_job_reserved_behind_a_hung_comfyui_is_run_by_another_worker_promptly(
    defaults: Settings, default_workers: WorkerFactory, start_sim
) -> None:
    """The stuck worker (one pool process) holds a job whose countdown ends while its ComfyUI
    hangs on another prompt: it hands the job back after ``POOL_WAIT_SECONDS`` and the other
    worker runs it, well before the stall timeout; no ComfyUI executes it twice."""
    assert defaults.stall_timeout == 120.0
    stuck_sim, free_sim = (start_sim("--step-ms", "20", "--load-ms", "0") for _ in range(2))
    stuck = default_workers.start(stuck_sim, "stuck", args=("--depth", "0"))
    with Farm(defaults) as farm:
        spec = build_spec(text2image(stuck_sim, steps=2), defaults)
        farm.app.send_task(
            RUN_JOB, args=[spec.to_dict()], task_id=spec.job_id, countdown=COUNTDOWN,
            queue=SHARED_QUEUE,
        )  # fmt: skip
        stuck.wait_for_log(f"run_job[{spec.job_id}] received")  # held for its countdown
        arm(stuck_sim, hang={"nth": 1})
        hanging = farm.submit(text2image(stuck_sim, steps=2))
        assert running_on(hanging) == "stuck"  # its only pool process now waits on the hang
        free = default_workers.start(free_sim, "free")
        started = time.monotonic()
        result = farm.job(spec.job_id).wait(PROMPTLY)
        waited = time.monotonic() - started

    assert result.status == "succeeded", result.error
    assert result.worker == free.name
    assert waited < PROMPTLY
    assert f"job {spec.job_id}: handed back to its queue, not started here" in stuck.log()
    assert executions(free_sim, spec.job_id) == 1
    assert executions(stuck_sim, spec.job_id) == 0


def test_a_job_held_by_a_worker_whose_comfyui_went_down_runs_elsewhere_on_its_first_try(
    defaults: Settings, default_workers: WorkerFactory, start_sim
) -> None:
    """A worker holds a job waiting for its countdown when its ComfyUI goes away: the health
    gate stops consuming and hands the job back at once, so the other worker runs it on its
    first try, instead of this worker trying it on a ComfyUI that is down (a retry)."""
    down_sim, free_sim = (start_sim("--step-ms", "20", "--load-ms", "0") for _ in range(2))
    down = default_workers.start(down_sim, "down", args=("--depth", "0"))
    with Farm(defaults) as farm:
        spec = build_spec(text2image(down_sim, steps=2), defaults)
        farm.app.send_task(
            RUN_JOB, args=[spec.to_dict()], task_id=spec.job_id, countdown=2 * COUNTDOWN,
            queue=SHARED_QUEUE,
        )  # fmt: skip
        down.wait_for_log(f"run_job[{spec.job_id}] received")  # held for its countdown
        down_sim.stop()
        free = default_workers.start(free_sim, "free")
        result = farm.job(spec.job_id).wait(PROMPTLY)

    assert result.status == "succeeded", result.error
    assert result.worker == free.name
    assert result.attempts == 1
    handed_back = f"job {spec.job_id}: handed back to its queue, not started here: ComfyUI is"
    assert handed_back in down.log()
    assert executions(free_sim, spec.job_id) == 1
