"""Failures: permanent ones fail at once with the node's details, retryable ones are retried on
the shared queue, and a job that runs out of retries becomes a dead letter."""

from __future__ import annotations

import json

import requests
from celery.result import AsyncResult
from farm_kit import WorkerFactory, executions, path_of, wait_until

from comfyfarm.producer import Farm
from comfyfarm.tasks.models import JobResult, new_job_id
from comfyfarm.tasks.names import RUN_JOB
from comfyfarm.tasks.routing import SHARED_QUEUE, worker_queue
from comfyfarm.workflows import SchemaSource, prepare_jobs


def test_node_error_fails_the_job_at_once_with_node_details(
    farm: Farm, workers: WorkerFactory, start_sim
) -> None:
    """A node error fails the job on attempt 1 with node id, node type and message in the result
    (and in result.json beside where its outputs would be)."""
    sim = start_sim(
        "--step-ms", "1", "--load-ms", "0",
        "--fault", "node_error:class_type=KSampler,message=CUDA out of memory (simulated)",
    )  # fmt: skip
    workers.start(sim)
    [prepared] = prepare_jobs("sd15_text2image", schema=SchemaSource.from_url(sim.url))
    job = farm.submit(prepared)

    result = job.wait(20)

    assert result.status == "failed" and result.attempts == 1
    error = result.error or {}
    assert error["type"] == "ExecutionFailed"
    assert error["node_id"] == "3" and error["node_type"] == "KSampler"
    assert "CUDA out of memory (simulated)" in error["exception_message"]
    assert executions(sim, job.job_id) == 1
    assert job.status() == "failed" and job.result() == result
    state = AsyncResult(job.job_id, app=farm.app)
    assert state.state == "FAILURE" and "KSampler" in str(state.result)
    assert farm.dead_letters() == []
    written = path_of(farm.settings.storage_url) / job.job_id / "result.json"
    assert JobResult.from_dict(json.loads(written.read_text())) == result


def test_retryable_failure_is_retried_on_the_shared_queue_and_succeeds(
    farm: Farm, workers: WorkerFactory, start_sim
) -> None:
    """A 5xx on submit is retried after a backoff via the shared queue, and attempt 2 succeeds."""
    sim = start_sim("--step-ms", "1", "--load-ms", "0", "--fault", "prompt_5xx:times=1")
    worker = workers.start(sim)
    [prepared] = prepare_jobs("sd15_text2image", schema=SchemaSource.from_url(sim.url))
    job = farm.submit(prepared, queue=worker_queue(worker.name))

    result = job.wait(30)

    assert result.status == "succeeded", result.error
    assert result.attempts == 2 and result.outputs
    assert executions(sim, job.job_id) == 1
    meta = AsyncResult(job.job_id, app=farm.app)
    assert meta.retries == 1 and meta.queue == SHARED_QUEUE
    assert f"Task comfyfarm.run_job[{job.job_id}] retry" in worker.log()


def test_job_that_runs_out_of_retries_fails_and_is_dead_lettered(
    farm: Farm, workers: WorkerFactory, start_sim
) -> None:
    """A job still failing after its last retry fails with the error and becomes a dead letter."""
    sim = start_sim("--step-ms", "1", "--load-ms", "0", "--fault", "prompt_5xx:status=503")
    workers.start(sim)
    [prepared] = prepare_jobs("sd15_text2image", schema=SchemaSource.from_url(sim.url))
    job = farm.submit(prepared, max_retries=1)

    result = job.wait(30)

    assert result.status == "failed" and result.attempts == 2
    assert (result.error or {})["type"] == "ComfyServerError"
    assert (result.error or {})["status"] == 503
    [letter] = farm.dead_letters()
    assert letter.job_id == job.job_id and letter.attempts == 2
    assert "retries exhausted" in letter.reason
    assert letter.spec is not None and letter.spec["job_id"] == job.job_id
    assert executions(sim, job.job_id) == 0
    written = path_of(farm.settings.storage_url) / job.job_id / "result.json"
    assert JobResult.from_dict(json.loads(written.read_text())) == result


def test_unreadable_payload_is_dead_lettered_and_fails_naming_the_field(
    farm: Farm, workers: WorkerFactory, start_sim
) -> None:
    """A message no worker can read fails naming the bad field and is kept as a dead letter."""
    sim = start_sim("--step-ms", "1", "--load-ms", "0")
    workers.start(sim)
    task_id = new_job_id()
    bad = {"version": 1, "job_id": task_id, "prompt": {"1": {"class_type": "X"}}}

    farm.app.send_task(RUN_JOB, args=[bad], task_id=task_id, queue=SHARED_QUEUE)

    [letter] = wait_until(farm.dead_letters, 20, "the dead letter")
    assert letter.job_id == task_id and letter.reason == "unreadable payload"
    assert (letter.error or {})["field"] == "prompt.1.inputs" and letter.spec == bad
    state = AsyncResult(task_id, app=farm.app)
    wait_until(lambda: state.state == "FAILURE", 10, "the task to fail")
    assert "prompt.1.inputs" in str(state.result)


def test_job_survives_a_comfyui_crash_by_running_again(
    farm: Farm, workers: WorkerFactory, start_sim
) -> None:
    """A job whose ComfyUI crashes and restarts empty mid-run succeeds on its second attempt."""
    sim = start_sim("--step-ms", "20", "--load-ms", "0")
    workers.start(sim)
    [prepared] = prepare_jobs(
        "sd15_text2image", schema=SchemaSource.from_url(sim.url), params=["steps=20"]
    )
    armed = requests.post(
        sim.url + "/_sim/faults", json={"crash": {"after_ms": 150, "nth": 1}}, timeout=5
    )
    assert armed.status_code == 200

    job = farm.submit(prepared)
    assert sim.proc is not None and sim.proc.process is not None
    sim.proc.process.wait(timeout=20)  # the crash
    sim.start()  # the same address, nothing remembered

    result = job.wait(30)
    assert result.status == "succeeded", result.error
    assert result.attempts == 2 and result.outputs
    assert executions(sim, job.job_id) == 1  # the restarted ComfyUI ran it once
