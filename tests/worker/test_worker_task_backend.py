"""The job task's final state (``worker.task_backend``): run through Celery's own trace, a job's
SUCCESS and its JobFailed/JobCancelled FAILURE are the values Celery writes, with its TTLs, in
two commands instead of five, and never over another try's SUCCESS."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from celery import Celery, Task, states
from celery.app.task import Context
from celery.app.trace import build_tracer
from celery.result import AsyncResult

from comfyfarm.comfy.errors import ExecutionFailed
from comfyfarm.services import RedisServer
from comfyfarm.storage import MemoryStore
from comfyfarm.tasks.app import make_app
from comfyfarm.tasks.connect import redis_client
from comfyfarm.tasks.models import JobResult, JobSpec, new_job_id
from comfyfarm.tasks.names import RUN_JOB
from comfyfarm.tasks.routing import SHARED_QUEUE
from comfyfarm.tasks.settings import Settings
from comfyfarm.worker import task as job_task
from comfyfarm.worker.deps import WorkerDeps
from comfyfarm.worker.job_errors import JobCancelled, JobFailed
from comfyfarm.worker.progress import ProgressEstimator
from comfyfarm.worker.progress_store import ProgressStore
from comfyfarm.worker.runner import JobContext, build_result, write_result
from comfyfarm.worker.task_backend import JobStatesBackend

PROMPT = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8}}}
Runner = Callable[[JobSpec, JobContext], JobResult]


def succeed(spec: JobSpec, ctx: JobContext) -> JobResult:
    ctx.on_progress(ProgressEstimator(spec, worker=ctx.worker_name).phase("collecting"))
    result = build_result(spec, ctx, status="succeeded", outputs=[])
    write_result(ctx.store, spec, result)
    return result


def fail(spec: JobSpec, ctx: JobContext) -> JobResult:
    raise ExecutionFailed(
        prompt_id="p", node_id="3", node_type="KSampler", exception_type="RuntimeError",
        exception_message="CUDA out of memory", traceback=[],
    )  # fmt: skip


def cancelled(spec: JobSpec, ctx: JobContext) -> JobResult:
    raise JobCancelled("cancelled: by request", job_id=spec.job_id)


def crash(spec: JobSpec, ctx: JobContext) -> JobResult:
    raise RuntimeError("a bug")


class Worker:
    """The job task registered on the real app, run by Celery's trace as a pool process runs
    it (not eager: results are stored)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runner: Runner = succeed
        self.deps = WorkerDeps(
            settings, comfy_url="http://127.0.0.1:9", worker_name="w1", client_id="comfyfarm-w1",
            open_output_store=lambda url: MemoryStore(f"tb-{uuid.uuid4().hex}"),
            open_redis=redis_client, run=lambda spec, ctx: self.runner(spec, ctx),
        )  # fmt: skip
        self.app: Celery = make_app(settings)
        self.task: Task = job_task.register(self.app, self.deps)

    def trace(self, payload: dict[str, Any]) -> Any:
        job_id = payload["job_id"]
        request = {
            "id": job_id, "task": RUN_JOB, "args": [payload], "kwargs": {}, "retries": 0,
            "hostname": "w1@test", "delivery_info": {"routing_key": SHARED_QUEUE},
            "ignore_result": False, "is_eager": False,
        }  # fmt: skip
        tracer = build_tracer(RUN_JOB, self.task, hostname="w1@test", eager=False, app=self.app)
        return tracer(job_id, [payload], {}, request)

    def meta(self, job_id: str) -> dict[str, Any]:
        raw = self.app.backend.client.get(self.app.backend.get_key_for_task(job_id))
        return dict(json.loads(raw))

    def ttl(self, job_id: str) -> int:
        return int(self.app.backend.client.ttl(self.app.backend.get_key_for_task(job_id)))


@pytest.fixture
def worker(redis_url: str) -> Iterator[Worker]:
    settings = Settings(
        broker_url=redis_url, key_prefix=f"tb-{uuid.uuid4().hex[:10]}:", lease_seconds=3
    )
    made = Worker(settings)
    yield made
    made.app.close()


def job() -> dict[str, Any]:
    return JobSpec(job_id=new_job_id(), prompt=PROMPT).to_dict()


#: What differs between two jobs' states whoever writes them.
PER_JOB = ("task_id", "date_done", "args", "result", "traceback")


def as_celery_writes_it(worker: Worker, runner: Runner) -> tuple[dict[str, Any], int]:
    """The state of a job the same task ends the same way with Celery's own backend."""
    worker.runner, payload = runner, job()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(worker.task, "backend", worker.app.backend)
        worker.trace(payload)
    return worker.meta(payload["job_id"]), worker.ttl(payload["job_id"])


def test_the_task_writes_its_final_state_through_the_job_backend(worker: Worker) -> None:
    assert isinstance(worker.task.backend, JobStatesBackend)


def test_a_success_is_the_value_celery_writes(worker: Worker) -> None:
    """Same fields (the request's, with ``result_extended``), result, TTL; what AsyncResult
    reads is the task's return value."""
    celerys, celerys_ttl = as_celery_writes_it(worker, succeed)
    payload = job()
    worker.runner = succeed
    traced = worker.trace(payload)

    ours = worker.meta(payload["job_id"])
    assert ours["status"] == states.SUCCESS and ours["result"] == traced.retval
    assert ours["args"] == [payload] and ours["task_id"] == payload["job_id"]
    assert {k: v for k, v in ours.items() if k not in PER_JOB} == {
        k: v for k, v in celerys.items() if k not in PER_JOB
    }
    assert set(ours["result"]) == set(celerys["result"]) and ours["traceback"] is None
    assert abs(worker.ttl(payload["job_id"]) - celerys_ttl) <= 1
    result = AsyncResult(payload["job_id"], app=worker.app)
    assert result.get(timeout=5) == traced.retval
    assert result.name == RUN_JOB and result.args == [payload]


@pytest.mark.parametrize("runner", [fail, cancelled], ids=["failed", "cancelled"])
def test_a_job_failure_is_the_value_celery_writes(worker: Worker, runner: Runner) -> None:
    """JobFailed (and a cancel's JobCancelled): the exception as Celery encodes it, its
    traceback, ``result_failure_expires``."""
    celerys, celerys_ttl = as_celery_writes_it(worker, runner)
    payload = job()
    worker.runner = runner
    worker.trace(payload)

    ours = worker.meta(payload["job_id"])
    assert ours["status"] == states.FAILURE
    assert ours["result"] == celerys["result"]
    assert ours["result"]["exc_type"] in ("JobFailed", "JobCancelled")
    assert ours["traceback"].startswith("Traceback") and celerys["traceback"].startswith(
        "Traceback"
    )
    assert {k: v for k, v in ours.items() if k not in PER_JOB} == {
        k: v for k, v in celerys.items() if k not in PER_JOB
    }
    assert abs(worker.ttl(payload["job_id"]) - celerys_ttl) <= 1
    with pytest.raises(Exception, match="JobFailed|JobCancelled|cancelled|ExecutionFailed"):
        AsyncResult(payload["job_id"], app=worker.app).get(timeout=5)


def test_a_bug_is_stored_by_celery_itself(worker: Worker, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a job outcome: Celery's own store_result, as before."""
    written: list[str] = []
    monkeypatch.setattr(ProgressStore, "store_final", lambda *a, **k: written.append("ours"))
    payload = job()
    worker.runner = crash
    worker.trace(payload)
    meta = worker.meta(payload["job_id"])
    assert meta["status"] == states.FAILURE and meta["result"]["exc_type"] == "RuntimeError"
    assert written == []


# --- the commands, on a private Valkey (its counters are this test's alone) ---------------


@pytest.fixture(scope="module")
def private() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def app(private: RedisServer) -> Iterator[Celery]:
    application = make_app(Settings(broker_url=private.url, key_prefix="cost:"))
    yield application
    application.close()


def request_of(task_id: str) -> Context:
    return Context(
        id=task_id, task=RUN_JOB, args=[{"job_id": task_id}], kwargs={}, retries=0,
        hostname="w1@test", delivery_info={"routing_key": SHARED_QUEUE},
    )  # fmt: skip


def counted(app: Celery, write: Callable[[], Any]) -> dict[str, int]:
    client = redis.Redis.from_url(app.conf.broker_url)
    client.config_resetstat()
    write()
    stats = client.info("commandstats")
    client.close()
    calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
    return {k: v for k, v in calls.items() if k not in ("info", "config|resetstat")}


def started(app: Celery) -> tuple[JobStatesBackend, str]:
    """A job backend and a task that wrote its first progress (connections opened)."""
    backend, task_id = JobStatesBackend(app, own_failures=(JobFailed,)), str(uuid.uuid4())
    backend.progress_store.store(task_id, {"phase": "running"}, "PROGRESS")
    return backend, task_id


def test_a_final_state_after_progress_costs_a_set_and_a_publish(app: Celery) -> None:
    backend, task_id = started(app)
    done = counted(
        app, lambda: backend.mark_as_done(task_id, {"status": "ok"}, request_of(task_id))
    )
    assert done == {"set": 1, "publish": 1}

    backend, task_id = started(app)
    failure = JobFailed("ExecutionFailed: boom", job_id=task_id)
    failed = counted(
        app, lambda: backend.mark_as_failure(task_id, failure, "Traceback ...", request_of(task_id))
    )
    assert failed == {"set": 1, "publish": 1}
    assert app.backend.get_task_meta(task_id, cache=False)["status"] == states.FAILURE


def test_celerys_own_write_costs_five(app: Celery) -> None:
    """What the job backend saves: Celery's guard and transaction (and any other error's cost)."""
    _, task_id = started(app)
    celerys = counted(
        app, lambda: app.backend.mark_as_done(task_id, {"status": "ok"}, request_of(task_id))
    )
    assert celerys == {"get": 1, "multi": 1, "setex": 1, "publish": 1, "exec": 1}


@pytest.mark.parametrize("progressed", [True, False], ids=["after-progress", "no-progress"])
def test_another_tries_success_is_never_overwritten(app: Celery, progressed: bool) -> None:
    """A copy that ran the job too wrote SUCCESS meanwhile: our failure (or our own success)
    leaves it, as Celery's guard does, and publishes nothing."""
    backend = JobStatesBackend(app, own_failures=(JobFailed,))
    task_id = str(uuid.uuid4())
    if progressed:
        backend.progress_store.store(task_id, {"phase": "running"}, "PROGRESS")
    app.backend.store_result(task_id, {"status": "first"}, states.SUCCESS)

    backend.mark_as_failure(task_id, JobFailed("late"), "Traceback ...", request_of(task_id))
    backend.mark_as_done(task_id, {"status": "second"}, request_of(task_id))

    meta = app.backend.get_task_meta(task_id, cache=False)
    assert meta["status"] == states.SUCCESS and meta["result"] == {"status": "first"}


def test_late_progress_never_overwrites_the_final_state(app: Celery) -> None:
    backend, task_id = started(app)
    backend.mark_as_done(task_id, {"status": "ok"}, request_of(task_id))
    assert not backend.progress_store.store(task_id, {"phase": "late"}, "PROGRESS")
    assert app.backend.get_task_meta(task_id, cache=False)["status"] == states.SUCCESS


def test_a_final_write_that_fails_is_left_to_celerys_retrying_write(
    app: Celery, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend, task_id = started(app)

    def refused(*args: Any, **kwargs: Any) -> bool:
        raise redis.ConnectionError("the primary went away")

    monkeypatch.setattr(ProgressStore, "_write", refused)
    backend.mark_as_done(task_id, {"status": "ok"}, request_of(task_id))
    meta = app.backend.get_task_meta(task_id, cache=False)
    assert meta["status"] == states.SUCCESS and meta["result"] == {"status": "ok"}
