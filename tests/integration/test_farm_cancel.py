"""Cancelling jobs: still queued (never runs) and running (only its own prompt is interrupted);
a running job learns of its cancel by push (``worker.cancel_watch``), also one sent while the
worker's subscription is down."""

from __future__ import annotations

import time

import redis
from celery.result import AsyncResult
from farm_kit import CommandLog, WorkerFactory, executions, sim_stats, wait_until

from comfyfarm.comfy.client import ComfyClient
from comfyfarm.producer import Farm
from comfyfarm.tasks.keyspace import cancel_key
from comfyfarm.tasks.routing import worker_queue
from comfyfarm.workflows import SchemaSource, prepare_jobs


def test_cancelled_queued_job_never_reaches_comfyui(
    farm: Farm, workers: WorkerFactory, start_sim
) -> None:
    """A job cancelled while it waits in the queue is reported cancelled and never executes."""
    sim = start_sim("--step-ms", "50", "--load-ms", "0")
    worker = workers.start(sim, args=("--depth", "0"))  # the second job stays in Redis
    schema = SchemaSource.from_url(sim.url)
    # 3 s of steps: the first job shows "running" within a second (the worker's progress settle
    # time) and must still hold the worker when the second one is cancelled.
    first, second = prepare_jobs(
        "sd15_text2image", schema=schema, params=["steps=60"], sweeps=["seed=1,2"]
    )
    running = farm.submit(first)
    wait_until(lambda: running.status() == "running", 10, "the first job to start")
    queued = farm.submit(second)
    assert queued.status() == "queued"

    outcome = queued.cancel()

    assert outcome.status_before == "queued" and outcome.flag_set
    cancelled = queued.wait(10)
    assert cancelled.status == "cancelled"
    assert running.wait(30).status == "succeeded"
    worker.wait_for_log(f"Discarding revoked task: comfyfarm.run_job[{queued.job_id}]")
    assert executions(sim, queued.job_id) == 0
    assert executions(sim, running.job_id) == 1
    assert queued.status() == "cancelled"
    assert queued.result() is not None and queued.result().status == "cancelled"
    state = AsyncResult(queued.job_id, app=farm.app)
    assert state.state == "REVOKED" and state.ready()
    assert "revoked" in str(state.result).lower() or state.result is not None
    assert farm.queue_depths()[0].total == 0


def test_cancelled_running_job_interrupts_only_its_own_prompt(
    farm: Farm, workers: WorkerFactory, start_sim
) -> None:
    """Cancelling a running job interrupts only its prompt; a job on another ComfyUI finishes."""
    sims = [start_sim("--step-ms", "60", "--load-ms", "0") for _ in range(2)]
    w0, w1 = workers.start_many(sims)
    schema = SchemaSource.from_url(sims[0].url)
    target, bystander = prepare_jobs(
        "sd15_text2image", schema=schema, params=["steps=25"], sweeps=["seed=1,2"]
    )
    victim = farm.submit(target, queue=worker_queue(w0.name))
    other = farm.submit(bystander, queue=worker_queue(w1.name))
    wait_until(
        lambda: (p := victim.progress()) is not None and p.phase == "running",
        10,
        "the job to run",
    )

    victim.cancel()

    result = victim.wait(10)
    assert result.status == "cancelled"
    assert other.wait(30).status == "succeeded"
    history = wait_until(lambda: ComfyClient(sims[0].url).get_history(victim.job_id), 10)
    assert "execution_interrupted" in [name for name, _ in history.messages]
    assert executions(sims[0], victim.job_id) == 1
    assert executions(sims[1], other.job_id) == 1
    assert victim.job_id not in sim_stats(sims[1])["executions"]
    final = wait_until(lambda: victim.result() if victim.status() == "cancelled" else None, 10)
    assert final.status == "cancelled"
    state = AsyncResult(victim.job_id, app=farm.app)  # what Flower reads: not a success
    assert state.state == "FAILURE" and type(state.result).__name__ == "JobCancelled"
    assert "cancelled" in str(state.result)


def test_cancelled_pipelined_job_is_removed_from_comfyui_queue(
    farm: Farm, workers: WorkerFactory, start_sim
) -> None:
    """A job already waiting in ComfyUI's own queue (pipelining) is deleted there when cancelled:
    it never executes, and the running job is not disturbed."""
    sim = start_sim("--step-ms", "50", "--load-ms", "0")
    workers.start(sim, args=("--depth", "1"))
    schema = SchemaSource.from_url(sim.url)
    # 200 steps x 50 ms: a job runs for 10 s, so the other one waits in ComfyUI's queue long
    # enough to be seen there however loaded the machine is.
    first, second = prepare_jobs(
        "sd15_text2image", schema=schema, params=["steps=200"], sweeps=["seed=1,2"]
    )
    jobs = {job.job_id: job for job in (farm.submit(first), farm.submit(second))}
    client = ComfyClient(sim.url)
    # Both jobs are taken at once (depth 1); whichever POSTs second waits in ComfyUI's queue.
    queued_id = wait_until(
        lambda: next((pid for pid in client.get_queue().pending if pid in jobs), None),
        20,
        "one of the jobs to wait in ComfyUI's queue",
    )
    waiting = jobs.pop(queued_id)
    (running,) = jobs.values()

    waiting.cancel()

    assert waiting.wait(10).status == "cancelled"
    assert running.wait(60).status == "succeeded"
    assert executions(sim, waiting.job_id) == 0
    assert waiting.job_id not in client.get_queue().pending


def test_a_running_job_learns_of_its_cancel_by_push_not_by_polling(
    farm: Farm, workers: WorkerFactory, start_sim, settings
) -> None:
    """While a long job runs its worker never asks for the cancel flag again (polling asked
    twice a second); the cancel still stops it at once."""
    sim = start_sim("--step-ms", "100", "--load-ms", "0")
    workers.start(sim)
    [prepared] = prepare_jobs(
        "sd15_text2image", schema=SchemaSource.from_url(sim.url), params=["steps=60"]
    )
    with CommandLog(settings.broker_url, cancel_key(settings.key_prefix, "")) as log:
        job = farm.submit(prepared)
        wait_until(
            lambda: (p := job.progress()) is not None and p.phase == "running", 20, "the job to run"
        )
        log.sync()
        asked_before = log.count("EXISTS", job.job_id)  # the worker's one, and ours (progress)
        time.sleep(2.0)  # an observation window: polling would have asked 4 times in it
        log.sync()
        asked_while_running = log.count("EXISTS", job.job_id) - asked_before
        job.cancel()
        result = job.wait(10)
    assert result.status == "cancelled"
    assert asked_while_running == 0, log.commands
    assert executions(sim, job.job_id) <= 1


def test_a_cancel_sent_while_the_workers_subscription_is_down_still_cancels(
    farm: Farm, workers: WorkerFactory, start_sim, settings
) -> None:
    """The worker's cancel subscription is killed and the cancel published before it is back:
    the job is cancelled anyway (polled while down, asked again after resubscribing)."""
    sim = start_sim("--step-ms", "100", "--load-ms", "0")
    workers.start(sim)
    [prepared] = prepare_jobs(
        "sd15_text2image", schema=SchemaSource.from_url(sim.url), params=["steps=60"]
    )
    job = farm.submit(prepared)
    wait_until(
        lambda: (p := job.progress()) is not None and p.phase == "running", 20, "the job to run"
    )
    admin = redis.Redis.from_url(settings.broker_url)
    # Every subscription, the worker's among them; the cancel goes out before it is back.
    admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")

    job.cancel()

    assert job.wait(10).status == "cancelled"
    assert executions(sim, job.job_id) <= 1
