"""What one job costs Redis, counted through the real path (a worker, the simulator, Valkey's
MONITOR): the commands that name the job stay few — progress, cancel and lease writes are
single commands, paced, not polled. ``comfyfarm bench broker`` prints the full figures; this
bounds the per-job part so a regression shows up as a failure, not as a slower farm."""

from __future__ import annotations

import redis
from farm_kit import CommandLog, WorkerFactory, wait_until

from comfyfarm.producer import Farm
from comfyfarm.tasks.keyspace import celery_result_key
from comfyfarm.tasks.registry import list_workers
from comfyfarm.tasks.routing import SHARED_QUEUE
from comfyfarm.tasks.settings import Settings
from comfyfarm.workflows import SchemaSource, prepare_jobs


def test_a_job_of_a_few_seconds_costs_redis_few_commands(
    farm: Farm, workers: WorkerFactory, start_sim, settings: Settings
) -> None:
    """A 4-second job: progress written for a phase that held 1 s and every 5 s, each write a SET
    and a PUBLISH (no script, no GET), and so is its final state; the cancel flag asked once,
    in the ledger's read; the lease taken, renewed and released with one command each."""
    sim = start_sim("--step-ms", "100", "--load-ms", "0")
    workers.start(sim, env={"COMFYFARM_LEASE_SECONDS": "3"})  # renewed every second
    [prepared] = prepare_jobs(
        "sd15_text2image", schema=SchemaSource.from_url(sim.url), params=["steps=40"]
    )
    with CommandLog(settings.broker_url, settings.key_prefix) as log:
        job = farm.submit(prepared)
        assert job.wait(60).status == "succeeded"
    mine = [c for c in log.commands if job.job_id in c]
    meta = celery_result_key(settings.key_prefix, job.job_id)
    progress = [c for c in mine if c.startswith(f"SET {meta} ") and '"PROGRESS"' in c]

    # "running" once it held 1 s, maybe one periodic; "submitted" and "collecting" end sooner
    assert 1 <= len(progress) <= 3, progress
    assert not [c for c in mine if c.startswith(("EVALSHA", "EVAL "))], mine
    # The final state too is a SET and a PUBLISH (worker.task_backend): no guard, no MULTI.
    assert log.count("GET", meta) == 0 and log.count("SETEX", meta) == 0
    final = [c for c in mine if c.startswith(f"SET {meta} ") and '"SUCCESS"' in c]
    assert len(final) == 1 and " IFEQ " in final[0], final
    # The cancel flag asked once, with the ledger entry (one MGET); the POST recorded in one SET.
    ledger = f"submitted:{job.job_id}"
    [read] = [c for c in mine if c.startswith("MGET ") and ledger in c]
    assert f"cancel:{job.job_id}" in read
    assert log.count("EXISTS", f"cancel:{job.job_id}") == 0
    assert [c.split()[0] for c in mine if ledger in c] == ["MGET", "SET"], mine
    assert log.count("DELIFEQ", job.job_id) == 1
    # 26 when measured: submit, delivery, lease (taken, renewed each second, released), the
    # ledger, progress, an output, the result; polling and per-update scripts made it over 60.
    assert len(mine) <= 36, "\n".join(c[:120] for c in mine)


def test_moving_a_queue_in_the_consume_order_does_not_declare_it_again(
    farm: Farm, workers: WorkerFactory, start_sim, settings: Settings
) -> None:
    """The first job of a checkpoint moves that model's queue ahead of the shared one: the
    queues are re-subscribed in the new order, but not declared again (a declare counts each
    of the ten priority lists: LLEN x 10, and rewrites the bindings)."""
    sim = start_sim("--step-ms", "100", "--load-ms", "0")
    workers.start(sim)
    model_queues = wait_until(
        lambda: [
            q for w in farm.status(ping_timeout=None).workers for q in w.info.queues
            if q.startswith("comfyfarm.model.")
        ],
        20,
        "the worker to consume its model queue",
    )  # fmt: skip
    [prepared] = prepare_jobs(
        "sd15_text2image", schema=SchemaSource.from_url(sim.url), params=["steps=20"]
    )
    client = redis.Redis.from_url(settings.broker_url, decode_responses=True)

    def moved() -> bool:  # the registry itself: farm.status() counts each queue's messages
        [worker] = list_workers(client, settings.key_prefix)
        return worker.queues.index(model_queues[0]) < worker.queues.index(SHARED_QUEUE)

    shared = settings.key_prefix + SHARED_QUEUE
    with CommandLog(settings.broker_url, shared) as log:
        job = farm.submit(prepared)
        wait_until(moved, 20, "the model queue to move ahead of the shared one")
        assert job.wait(30).status == "succeeded"
    # The producer declares the shared queue on its first publish; the worker cancelled it and
    # added it back behind the model queue without a declare of its own.
    declares = [c for c in log.commands if c.startswith("LLEN ") and c.split()[1] == shared]
    assert len(declares) == 1


def test_fetch_and_ack_bookkeeping_goes_without_multi_exec(
    farm: Farm, workers: WorkerFactory, start_sim, settings: Settings
) -> None:
    """kombu records a fetched message (ZADD unacked_index + HSET unacked) and forgets it at
    the ack (ZREM + HDEL): in plain pipelines, not wrapped in MULTI/EXEC (worker.unacked)."""
    sim = start_sim("--step-ms", "1", "--load-ms", "0")
    workers.start(sim)
    [prepared] = prepare_jobs("sd15_text2image", schema=SchemaSource.from_url(sim.url))
    index = settings.key_prefix + "unacked_index"
    client = redis.Redis.from_url(settings.broker_url)
    with CommandLog(settings.broker_url, "") as log:  # every command: MULTI names no key
        assert farm.submit(prepared).wait(30).status == "succeeded"
        wait_until(lambda: client.zcard(index) == 0, 10, "the ack (after the result)")
    commands = list(log.commands)
    bookkeeping = [
        i for i, c in enumerate(commands) if c.startswith((f"ZADD {index} ", f"ZREM {index} "))
    ]
    assert len(bookkeeping) == 2, commands  # the fetch and the ack
    assert [commands[i - 1] for i in bookkeeping if commands[i - 1] == "MULTI"] == []
