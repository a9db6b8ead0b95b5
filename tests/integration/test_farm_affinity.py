"""Affinity through real workers, simulators and Valkey: jobs go to the queue of their
checkpoint, workers take the jobs of the model they have loaded first, and no job waits longer
than COMFYFARM_AFFINITY_WAIT for a worker with its model loaded."""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

from farm_kit import WorkerFactory, sim_stats, wait_until

from comfyfarm.producer import Farm
from comfyfarm.tasks.registry import list_workers
from comfyfarm.tasks.routing import model_queue
from comfyfarm.tasks.settings import Settings

CHECKPOINTS = ("a.safetensors", "b.safetensors", "c.safetensors")
SIM_ARGS = ("--models", "checkpoints=" + ",".join(CHECKPOINTS), "--node-ms", "0")


def prompt_loading(ckpt: str, seed: int) -> dict[str, Any]:
    library = resources.files("comfyfarm.workflows") / "library" / "sd15_text2image.api.json"
    prompt = copy.deepcopy(json.loads(library.read_text()))
    prompt["4"]["inputs"]["ckpt_name"] = ckpt
    prompt["3"]["inputs"]["seed"] = seed
    prompt["3"]["inputs"]["steps"] = 20
    return dict(prompt)


def wait_for_model_queues(farm: Farm, count: int) -> None:
    wanted = {model_queue(name) for name in CHECKPOINTS}
    wait_until(
        lambda: (
            len(live := list_workers(farm.redis, farm.settings.key_prefix)) == count
            and all(wanted <= set(worker.queues) for worker in live)
        ),
        what="workers listing their model queues",
    )


def test_jobs_go_where_their_checkpoint_is_loaded(
    workers: WorkerFactory, start_sim: Any, settings: Settings
) -> None:
    """30 jobs cycling over 3 checkpoints on 2 GPUs: each job is sent to its checkpoint's queue,
    the GPUs load a checkpoint a handful of times (not once per job) and the registry says
    which checkpoint each worker has loaded."""
    sims = [start_sim("--step-ms", "5", "--load-ms", "300", *SIM_ARGS) for _ in range(2)]
    workers.start_many(sims)
    with Farm(settings.with_overrides(affinity=True)) as farm:
        wait_for_model_queues(farm, 2)
        jobs = [prompt_loading(CHECKPOINTS[n % 3], seed=n) for n in range(30)]
        handles = farm.submit_many(jobs)
        assert {handle.queue for handle in handles} == {model_queue(c) for c in CHECKPOINTS}
        results = list(farm.as_completed(handles, 120))
        assert [r.status for r in results] == ["succeeded"] * 30
        loads = sum(sim_stats(sim)["model_loads"] for sim in sims)
        assert 2 <= loads <= 8, f"{loads} checkpoint loads for 30 jobs of 3 checkpoints"
        live = wait_until(
            lambda: [w for w in list_workers(farm.redis, farm.settings.key_prefix) if w.loaded],
            what="the registry showing loaded checkpoints",
        )
        loaded_now = {sim_stats(sim)["loaded_checkpoint"] for sim in sims}
        assert {name for w in live for name in w.loaded} <= loaded_now | set(CHECKPOINTS)
        assert all(set(w.loaded) <= set(CHECKPOINTS) for w in live)


def test_a_job_waits_for_an_affine_worker_at_most_the_affinity_wait(
    workers: WorkerFactory, start_sim: Any, settings: Settings
) -> None:
    """One GPU busy with a long run of checkpoint-a jobs: a checkpoint-b job submitted with them
    starts after about COMFYFARM_AFFINITY_WAIT (1 s), long before the a jobs are done."""
    sim = start_sim("--step-ms", "5", "--load-ms", "100", *SIM_ARGS)
    workers.start(sim, "w0", env={"COMFYFARM_AFFINITY_WAIT": "1"})
    with Farm(settings.with_overrides(affinity=True)) as farm:
        wait_for_model_queues(farm, 1)
        first = farm.submit(prompt_loading("a.safetensors", seed=0))
        assert first.wait(60).status == "succeeded"  # checkpoint a is loaded now
        a_jobs = farm.submit_many([prompt_loading("a.safetensors", seed=n) for n in range(1, 81)])
        b_job = farm.submit(prompt_loading("b.safetensors", seed=0))
        results = list(farm.as_completed([*a_jobs, b_job], 120))
        assert all(r.status == "succeeded" for r in results)
        starts = {run["prompt_id"]: run["start"] for run in sim_stats(sim)["timeline"]}
        a_starts = sorted(starts[handle.job_id] for handle in a_jobs)
        assert starts[b_job.job_id] < a_starts[-20], "the b job waited for every a job"
