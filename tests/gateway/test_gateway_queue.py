"""Where a gateway job waits, and where it runs: ``queue_position`` counts every job waiting on
its queue (the CLI's and Python programs' too) in the order workers take them, and a gateway
job is sent where ``Farm.submit`` would send it (checkpoint affinity). Real Valkey, a real
gateway process, real workers and simulators."""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from farm_kit import sim_stats, wait_until
from workflows_kit import invert

from comfyfarm.gateway.queue_position import QueuePositions
from comfyfarm.producer import Farm
from comfyfarm.tasks.keyspace import job_key
from comfyfarm.tasks.registry import list_workers
from comfyfarm.tasks.routing import model_queue, queue_keys, worker_queue
from comfyfarm.tasks.settings import Settings

CHECKPOINTS = ("a.safetensors", "b.safetensors")
SIM_ARGS = ("--models", "checkpoints=" + ",".join(CHECKPOINTS), "--node-ms", "0")


def position(client, job_id: str) -> int | None:
    return client.jobs.get(job_id)._model.queue_position


def test_queue_position_counts_every_job_waiting_on_the_queue(sdk, settings: Settings) -> None:
    """Jobs from Farm.submit and from the gateway, mixed: a gateway job's position counts the
    farm's jobs ahead of it, a more urgent job sent later moves ahead of it, and a canceled
    one stops counting."""
    client = sdk("acme")
    with Farm(settings) as farm:
        before = [farm.submit(invert()) for _ in range(2)]
        mine = client.submit(client.workflows.from_json(invert()))
        farm.submit(invert())
        later = client.submit(client.workflows.from_json(invert()))

        assert position(client, mine.id) == 2
        assert position(client, later.id) == 4

        farm.submit(invert(), priority=9)
        wait_until(lambda: position(client, mine.id) == 3, what="an urgent job to move ahead")
        before[0].cancel()
        wait_until(lambda: position(client, mine.id) == 2, what="a canceled job to stop counting")
        assert position(client, later.id) == 4


def test_waiting_ids_are_read_from_any_message_layout(redis_url: str) -> None:
    """The snapshot finds a task id in kombu's layout, in compact JSON (decoded by the script)
    and counts a message without one as waiting work, in the order workers take them."""
    prefix = f"qp-{uuid.uuid4().hex[:8]}:"
    ids = [str(uuid.uuid4()) for _ in range(3)]
    keys = queue_keys(prefix, "comfyfarm")
    messages = {
        keys[5]: [
            json.dumps({"body": "eyJpZCI6IDF9", "headers": {"lang": "py", "id": ids[0]}}),
            json.dumps({"headers": {"id": ids[1]}}, separators=(",", ":")),
        ],
        keys[9]: ["not json", json.dumps({"body": "", "headers": {"id": ids[2]}})],
    }

    async def read() -> Any:
        client = aioredis.Redis.from_url(redis_url)
        try:
            for key, items in messages.items():
                await client.lpush(key, *items)  # pushed oldest first, as producers do
            return await QueuePositions(client, prefix).read("comfyfarm")
        finally:
            await client.aclose()

    snapshot = asyncio.run(read())

    assert snapshot.ahead == {ids[2]: 1, ids[0]: 2, ids[1]: 3}
    assert snapshot.waiting == 4 and snapshot.complete


def prompt_loading(ckpt: str, seed: int, steps: int = 10) -> dict[str, Any]:
    library = resources.files("comfyfarm.workflows") / "library" / "sd15_text2image.api.json"
    prompt = copy.deepcopy(json.loads(library.read_text()))
    prompt["4"]["inputs"]["ckpt_name"] = ckpt
    prompt["3"]["inputs"]["seed"] = seed
    prompt["3"]["inputs"]["steps"] = steps
    return dict(prompt)


def waiting(farm: Farm, queue: str) -> int:
    return sum(
        int(farm.redis.llen(key)) for key in queue_keys(farm.settings.key_prefix, queue).values()
    )


def test_gateway_job_goes_where_farm_submit_sends_it(
    start_gateway, sdk_factory_for, start_sim, workers, settings: Settings
) -> None:
    """Affinity on, two GPUs with checkpoint a loaded on w0 and b on w1, w0 busy: a gateway job
    loading b goes to b's model queue — the queue Farm.submit picks for it — and runs on w1
    without a checkpoint load."""
    sims = [start_sim("--step-ms", "20", "--load-ms", "200", *SIM_ARGS) for _ in range(2)]
    w0, w1 = workers.start_many(sims)
    wanted = {model_queue(name) for name in CHECKPOINTS}
    with Farm(settings.with_overrides(affinity=True)) as farm:
        prefix = farm.settings.key_prefix
        wait_until(
            lambda: (
                len(live := list_workers(farm.redis, prefix)) == 2
                and all(wanted <= set(w.queues) for w in live)
            ),
            what="both workers listing the model queues",
        )
        loads = [farm.submit(prompt_loading(ckpt, 0), queue=worker_queue(w.name))
                 for ckpt, w in zip(CHECKPOINTS, (w0, w1), strict=True)]  # fmt: skip
        assert all(r.status == "succeeded" for r in farm.as_completed(loads, 60))
        # w0 busy for the whole test: one long job running, one prefetched (its pool is full),
        # one left in its own queue; so only w1 can take the gateway's job.
        busy = [farm.submit(prompt_loading("a.safetensors", n, steps=5000),
                            queue=worker_queue(w0.name)) for n in range(1, 4)]  # fmt: skip
        wait_until(lambda: waiting(farm, worker_queue(w0.name)) == 1, what="w0's pool to fill")
        client = sdk_factory_for(start_gateway(COMFYFARM_AFFINITY="1"))("acme")

        job = client.submit(client.workflows.from_json(prompt_loading("b.safetensors", 7)))
        done = job.result()
        record = json.loads(farm.redis.get(job_key(prefix, job.id)))
        same = farm.submit(prompt_loading("b.safetensors", 8))

        assert record["queue"] == same.queue == model_queue("b.safetensors")
        assert done.status == "succeeded"
        assert farm.job(job.id).wait(5).worker == w1.name
        assert sim_stats(sims[1])["model_loads"] == 1
        for handle in busy:
            handle.cancel()
        list(farm.as_completed([*busy, same], 120))
