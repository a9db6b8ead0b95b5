"""Guarantees 3, 4, 5 and 10: ComfyUI restarted, its WebSocket dropped, hung, or crashing on
every job — each detected, retried within bounds, and reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from farm_kit import WorkerFactory, executions, wait_until
from rel_kit import Supervisor, arm, running_on, text2image

from comfyfarm.producer import Farm
from comfyfarm.tasks.settings import Settings


def test_hung_comfyui_is_interrupted_at_the_deadline_and_the_worker_goes_on(
    farm: Farm, workers: WorkerFactory, start_sim
) -> None:
    """A prompt that stops progressing while ComfyUI still lists it as running is followed to its
    deadline (silence alone is no fault), then fails with PromptTimeout(kind="stall"), a targeted
    interrupt is sent, the worker lives; once ComfyUI is back (restarted: the simulated hang
    ignores interrupts, like a stuck GPU) the worker's next job succeeds."""
    sim = start_sim("--step-ms", "20", "--load-ms", "0", "--access-log", "--log-level", "info")
    worker = workers.start(sim)
    arm(sim, hang={"after_ms": 100, "nth": 1})
    started = time.monotonic()

    hung = farm.submit(text2image(sim), stall_timeout_seconds=1.0, deadline_seconds=4.0).wait(20)

    assert hung.status == "failed"
    assert hung.error is not None and hung.error["type"] == "PromptTimeout"
    assert hung.error["kind"] == "stall" and 3.0 <= hung.error["seconds"] < 5.0
    assert time.monotonic() - started < 8
    assert any("POST /api/interrupt" in line for line in list(sim.proc.output))  # type: ignore[union-attr]
    assert worker.proc.alive()

    sim.restart()  # the fault was armed at runtime: gone after the restart
    after = farm.submit(text2image(sim)).wait(30)
    assert after.status == "succeeded", after.error
    assert after.worker == worker.name
    assert executions(sim, after.job_id) == 1


def test_dropped_websocket_is_reconnected_and_the_job_completes(
    farm: Farm, workers: WorkerFactory, start_sim
) -> None:
    """Every WebSocket cut 300 ms into the job while ComfyUI keeps running: the worker
    reconnects, reconciles, and the job succeeds, once, well within the stall timeout."""
    sim = start_sim("--step-ms", "50", "--load-ms", "0", "--fault", "drop_ws:after_ms=300,nth=1")
    workers.start(sim)

    result = farm.submit(text2image(sim), stall_timeout_seconds=3.0).wait(30)

    assert result.status == "succeeded", result.error
    assert result.attempts == 1
    assert executions(sim, result.job_id) == 1
    assert result.timings.run_seconds < 1.0 + 3.0


def test_comfyui_restarted_mid_job_is_detected_and_the_job_retried(
    farm: Farm, workers: WorkerFactory, start_sim
) -> None:
    """ComfyUI killed and started again mid-job (queue and history gone): the job is retried
    and completes on the new ComfyUI, which ran it once."""
    sim = start_sim("--step-ms", "100", "--load-ms", "0")
    workers.start(sim)
    job = farm.submit(text2image(sim, steps=30))
    running_on(job)

    sim.kill()
    sim.start()  # same port, empty queue and history

    result = job.wait(40)
    assert result.status == "succeeded", result.error
    assert result.attempts == 2
    assert executions(sim, job.job_id) == 1


def test_comfyui_crashing_on_every_job_fails_it_after_the_retries_and_parks_it(
    farm: Farm, workers: WorkerFactory, start_sim, settings: Settings
) -> None:
    """A poisoned job crashes ComfyUI on every attempt (restarted each time): after
    1 + COMFYFARM_MAX_RETRIES attempts it fails saying why, and its dead letter shows in
    ``comfyfarm status``."""
    sim = start_sim("--step-ms", "20", "--load-ms", "0", "--fault", "crash:after_ms=50")
    with Supervisor(sim) as supervisor:
        workers.start(sim)
        result = farm.submit(text2image(sim)).wait(60)

        assert result.status == "failed"
        assert result.attempts == 1 + settings.max_retries
        assert supervisor.restarts == result.attempts
    assert result.error is not None
    assert result.error["type"] in ("PromptLost", "ComfyUnavailable"), result.error
    [letter] = farm.dead_letters()
    assert letter.job_id == result.job_id
    assert letter.reason == f"retries exhausted ({settings.max_retries})"
    assert letter.attempts == result.attempts

    env = {k: v for k, v in os.environ.items() if not k.startswith("COMFYFARM_")}
    env.update(
        COMFYFARM_BROKER_URL=settings.broker_url,
        COMFYFARM_KEY_PREFIX=settings.key_prefix,
        COMFYFARM_STORAGE_URL=settings.storage_url,
    )
    cli = [sys.executable, "-P", "-m", "comfyfarm", "status"]
    as_json = subprocess.run([*cli, "--json"], env=env, capture_output=True, text=True, timeout=60)
    body = json.loads(as_json.stdout)
    assert as_json.returncode == (0 if body["serving"] else 1), as_json.stderr  # a health check
    assert body["dead_letters"] == 1
    assert [letter["job_id"] for letter in body["recent_dead_letters"]] == [result.job_id]
    as_text = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=60)
    assert result.job_id in as_text.stdout and "retries exhausted" in as_text.stdout


def test_tries_that_never_reach_comfyui_do_not_use_up_the_retries(
    farm: Farm, workers: WorkerFactory, start_sim
) -> None:
    """A job with no retries to spend, taken while its worker's ComfyUI is down and before the
    health check noticed, is put back (not failed); when ComfyUI is back it runs, once."""
    sim = start_sim("--step-ms", "1", "--load-ms", "0")
    worker = workers.start(sim, args=("--health-interval", "3600"))  # never notices the outage
    prepared = text2image(sim)
    sim.stop()

    job = farm.submit(prepared, max_retries=0)
    worker.wait_for_log(f"job {job.job_id}: ")  # refused connection: a retry, nothing used
    wait_until(lambda: job.status() == "retrying", 10, "the job to wait for its retry")
    sim.start()  # the same address, like a restarted ComfyUI

    result = job.wait(40)
    assert result.status == "succeeded", result.error
    assert result.attempts >= 2 and result.worker == worker.name
    assert executions(sim, job.job_id) == 1
    assert "0 of 1 tries used" in worker.log()
