"""Placing jobs in a fleet whose ComfyUIs differ: the shared queue when every live worker can run
a job, the queues of those that can otherwise, and a refusal when none can."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis
from producer_helpers import all_messages

from comfyfarm.producer.placement import place_jobs
from comfyfarm.tasks.registry import register_worker
from comfyfarm.tasks.schemas import PublishedSchema, publish_schema
from comfyfarm.workflows import PreparedJob, PromptInvalid, prepare_jobs

OBJECT_INFO = Path(__file__).resolve().parents[1] / "protocol" / "object_info.json"
SD15 = "v1-5-pruned-emaonly-fp16.safetensors"
VAE = "vae-ft-mse-840000-ema-pruned.safetensors"


@pytest.fixture(scope="module")
def object_info() -> dict[str, Any]:
    return json.loads(OBJECT_INFO.read_text())


def worker(
    name: str, object_info: dict[str, Any], *checkpoints: str, age: float = 0
) -> PublishedSchema:
    models = {"checkpoints": list(checkpoints), "vae": [VAE]}
    return PublishedSchema(name, f"http://{name}:8188", object_info, models, 1000.0 - age)


def sweep(*checkpoints: str) -> list[PreparedJob]:
    """The shipped text-to-image job once per checkpoint."""
    [base] = prepare_jobs("sd15_text2image", schema=None, validate=False)
    loader = base.prompt["4"]
    return [
        PreparedJob(
            prompt={**base.prompt, "4": {**loader, "inputs": {"ckpt_name": ckpt}}},
            params={"ckpt": ckpt},
        )
        for ckpt in checkpoints
    ]


def test_jobs_every_worker_can_run_go_to_the_shared_queue(object_info) -> None:
    fleet = [worker("gpu0", object_info, SD15), worker("gpu1", object_info, SD15)]
    [placement] = place_jobs(sweep(SD15), fleet, live={"gpu0", "gpu1"})
    assert placement.queue is None and placement.capable == ("gpu0", "gpu1")


def test_a_model_only_some_workers_have_sends_jobs_to_their_queues_in_turn(object_info) -> None:
    """Four jobs needing a checkpoint two of three workers have alternate between those two."""
    fleet = [worker("gpu0", object_info, SD15), worker("gpu1", object_info, SD15, "xl.safetensors"),
             worker("gpu2", object_info, SD15, "xl.safetensors")]  # fmt: skip
    placements = place_jobs(
        sweep(*["xl.safetensors"] * 4, SD15), fleet, live={"gpu0", "gpu1", "gpu2"}
    )
    assert [p.queue for p in placements] == [
        "comfyfarm.worker.gpu1", "comfyfarm.worker.gpu2", "comfyfarm.worker.gpu1",
        "comfyfarm.worker.gpu2", None,
    ]  # fmt: skip
    assert placements[0].capable == ("gpu1", "gpu2")


def test_a_job_no_worker_can_run_is_refused_naming_node_and_input(object_info) -> None:
    fleet = [worker("gpu0", object_info, SD15), worker("gpu1", object_info, SD15)]
    with pytest.raises(PromptInvalid) as caught:
        place_jobs(sweep("missing.safetensors"), fleet, live={"gpu0", "gpu1"})
    [problem] = caught.value.problems
    assert problem.node_id == "4" and problem.input_name == "ckpt_name"


def test_workers_that_are_not_live_do_not_count(object_info) -> None:
    """A stopped worker's old schema neither attracts jobs nor makes the fleet look mixed."""
    fleet = [worker("gpu0", object_info, SD15), worker("old", object_info, "xl.safetensors")]
    [placement] = place_jobs(sweep(SD15), fleet, live={"gpu0"})
    assert placement.queue is None and placement.capable == ("gpu0",)


def test_submit_routed_queues_each_job_where_it_can_run(farm, object_info) -> None:
    """Farm.submit_routed reads the published schemas and the live workers from Redis, sends
    each job to its queue, and returns the handles in the order of the jobs."""
    raw = redis.Redis.from_url(farm.settings.broker_url)
    prefix = farm.settings.key_prefix
    for name, checkpoints in (("gpu0", [SD15]), ("gpu1", [SD15, "xl.safetensors"])):
        publish_schema(raw, prefix, name, comfy_url=f"http://{name}:8188", object_info=object_info,
                       models={"checkpoints": checkpoints, "vae": [VAE]})  # fmt: skip
        register_worker(farm.redis, prefix, name, {"comfy_url": f"http://{name}:8188"})
    raw.close()

    handles = farm.submit_routed(sweep(SD15, "xl.safetensors", SD15), priority=7)

    assert [h.queue for h in handles] == ["comfyfarm", "comfyfarm.worker.gpu1", "comfyfarm"]
    shared = all_messages(farm.redis, prefix, "comfyfarm")
    own = all_messages(farm.redis, prefix, "comfyfarm.worker.gpu1")
    assert [m["headers"]["id"] for m in shared] == [handles[0].job_id, handles[2].job_id]
    assert [m["headers"]["id"] for m in own] == [handles[1].job_id]
