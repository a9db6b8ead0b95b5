"""The contract end to end with a real Celery worker (in a thread) on the real Redis, running a
stand-in RUN_JOB task: what the producer sends is what a worker receives, and what the worker
reports is what the producer reads."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker
from producer_helpers import PROMPT

from comfyfarm.producer import Farm, SubmitError
from comfyfarm.tasks.app import make_app
from comfyfarm.tasks.models import PROGRESS_STATE, JobProgress, JobResult, JobSpec, Timings
from comfyfarm.tasks.names import RUN_JOB
from comfyfarm.tasks.settings import Settings


def register_stand_in(app: Celery) -> None:
    @app.task(name=RUN_JOB, bind=True, shared=False)
    def run_job(self: Any, payload: dict[str, Any]) -> dict[str, Any]:
        spec = JobSpec.from_dict(payload)
        for percent in (25.0, 75.0):
            self.update_state(state=PROGRESS_STATE, meta=JobProgress(
                job_id=spec.job_id, phase="running", percent=percent, worker="stand-in",
            ).to_dict())  # fmt: skip
        return JobResult(
            job_id=spec.job_id, status="succeeded", worker="stand-in", params=spec.params,
            timings=Timings.measure(enqueued_at=spec.enqueued_at, started_at=spec.enqueued_at,
                                    finished_at=spec.enqueued_at + 1),
        ).to_dict()  # fmt: skip


@pytest.fixture
def worker_app(settings: Settings) -> Iterator[Celery]:
    app = make_app(settings)
    register_stand_in(app)
    with start_worker(app, pool="threads", concurrency=1, perform_ping_check=False):
        yield app
    app.close()


@pytest.mark.slow
def test_a_worker_runs_what_the_producer_sent(farm: Farm, worker_app: Celery) -> None:
    """Batched messages are ordinary Celery tasks; progress and results flow back to wait()."""
    jobs = farm.submit_many([PROMPT] * 3, workflow_name="roundtrip")
    single = farm.submit(PROMPT, params={"seed": 9})
    seen: list[float] = []
    final = single.wait(30, on_progress=lambda p: seen.append(p.percent))
    assert final.status == "succeeded" and final.params == {"seed": 9}
    assert set(seen) <= {25.0, 75.0}
    for job in jobs:
        assert job.wait(30).worker == "stand-in"
    assert farm.status(ping_timeout=None).queue_depth() == 0


def test_unreachable_broker_raises_submit_error() -> None:
    """With Redis down nothing is sent and SubmitError says which jobs did not go out."""
    from comfyfarm.services import free_port

    settings = Settings(broker_url=f"redis://127.0.0.1:{free_port()}/0")
    with Farm(settings) as farm, pytest.raises(SubmitError) as caught:
        farm.app.conf.broker_connection_timeout = 0.5  # give up sooner than the default 4 s
        farm.submit_many([PROMPT] * 2)
    assert caught.value.job_ids_sent == [] and len(caught.value.job_ids_not_sent) == 2
