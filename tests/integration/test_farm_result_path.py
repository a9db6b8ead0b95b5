"""A job's final Celery state through the real path (a worker, the simulator, Valkey): written in
two commands (``worker.task_backend``), and read by producers and by a plain Celery
``AsyncResult`` as the state Celery itself writes — the task's return value, or its exception,
with the request's fields (``result_extended``) and the backend's TTL."""

from __future__ import annotations

from celery.result import AsyncResult
from farm_kit import CommandLog, WorkerFactory

from comfyfarm.producer import Farm
from comfyfarm.tasks.keyspace import celery_result_key
from comfyfarm.tasks.names import RUN_JOB
from comfyfarm.tasks.settings import Settings
from comfyfarm.workflows import SchemaSource, prepare_jobs


def test_a_success_reads_back_as_celerys_own(
    farm: Farm, workers: WorkerFactory, start_sim, settings: Settings
) -> None:
    sim = start_sim("--step-ms", "1", "--load-ms", "0")
    worker = workers.start(sim)
    [prepared] = prepare_jobs("sd15_text2image", schema=SchemaSource.from_url(sim.url))
    with CommandLog(settings.broker_url, celery_result_key(settings.key_prefix, "")) as log:
        job = farm.submit(prepared)
        result = job.wait(30)
        log.sync()

    assert result.status == "succeeded" and result.outputs
    state = AsyncResult(job.job_id, app=farm.app)
    assert state.get(timeout=10) == result.to_dict()  # the task's return value, as Celery keeps it
    assert state.state == "SUCCESS" and state.date_done is not None
    assert state.name == RUN_JOB and state.args[0]["job_id"] == job.job_id
    assert str(state.worker).split("@")[0] == worker.name  # the node name, as Celery records it
    assert state.retries == 0 and state.queue == "comfyfarm"
    ttl = farm.app.backend.client.ttl(celery_result_key(settings.key_prefix, job.job_id))
    assert 0 < int(ttl) <= int(settings.result_expires)
    final = [c for c in log.commands if c.startswith("SET ") and '"SUCCESS"' in c]
    # Conditional: IFEQ our last progress, or NX when the job ended before a phase settled.
    assert len(final) == 1 and conditional(final[0]), log.commands
    assert not [c for c in log.commands if c.startswith(("GET ", "SETEX ", "EVALSHA "))]


def test_a_failure_reads_back_as_celerys_own(
    farm: Farm, workers: WorkerFactory, start_sim, settings: Settings
) -> None:
    sim = start_sim(
        "--step-ms", "1", "--load-ms", "0",
        "--fault", "node_error:class_type=KSampler,message=CUDA out of memory (simulated)",
    )  # fmt: skip
    workers.start(sim)
    [prepared] = prepare_jobs("sd15_text2image", schema=SchemaSource.from_url(sim.url))
    with CommandLog(settings.broker_url, celery_result_key(settings.key_prefix, "")) as log:
        job = farm.submit(prepared)
        result = job.wait(30)
        log.sync()

    assert result.status == "failed" and job.status() == "failed"
    state = AsyncResult(job.job_id, app=farm.app)
    error = state.get(timeout=10, propagate=False)
    assert state.state == "FAILURE" and type(error).__name__ == "JobFailed"
    assert "KSampler" in str(error) and "CUDA out of memory (simulated)" in str(error)
    assert state.traceback and "JobFailed" in state.traceback
    assert state.name == RUN_JOB and state.args[0]["job_id"] == job.job_id
    final = [c for c in log.commands if c.startswith("SET ") and '"FAILURE"' in c]
    # Conditional: IFEQ our last progress, or NX when the job ended before a phase settled.
    assert len(final) == 1 and (
        " IFEQ " in final[0] or final[0].endswith(("NX", "NX EX 604800")) or " NX " in final[0]
    ), log.commands
    assert not [c for c in log.commands if c.startswith(("GET ", "SETEX ", "EVALSHA "))]


def conditional(command: str) -> bool:
    """Whether a logged ``SET`` writes only if the key holds our last value (IFEQ) or nothing."""
    words = command.split()
    return "IFEQ" in words or "NX" in words
