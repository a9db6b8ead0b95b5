"""Broker messages no worker can run are dead-lettered, and the worker keeps going (issue 13
#1 and the compression part of #5)."""

from __future__ import annotations

import json
from typing import Any

from farm_kit import WorkerFactory, wait_until

from comfyfarm.producer import Farm
from comfyfarm.producer.build import build_spec
from comfyfarm.tasks.models import new_job_id
from comfyfarm.tasks.names import RUN_JOB
from comfyfarm.tasks.routing import SHARED_QUEUE
from comfyfarm.workflows import SchemaSource, prepare_jobs


def _publish(farm: Farm, body: Any, *, task: str, task_id: str, **options: Any) -> None:
    """Publish a raw task message (headers as Celery's protocol 2 writes them) on the shared
    queue: what anyone who can write to the broker can do."""
    queue = farm.app.amqp.queues[SHARED_QUEUE]
    with farm.app.connection_for_write() as conn:
        conn.Producer().publish(
            json.dumps(body),
            exchange=queue.exchange,
            routing_key=queue.routing_key,
            declare=[queue],
            headers={
                "lang": "py",
                "task": task,
                "id": task_id,
                "root_id": task_id,
                "argsrepr": "",
                "kwargsrepr": "",
                "origin": "test",
            },  # fmt: skip
            content_type="application/json",
            content_encoding="utf-8",
            **options,
        )


def test_malformed_messages_are_dead_lettered_and_the_worker_keeps_going(
    farm: Farm, workers: WorkerFactory, sim
) -> None:
    """A body that is not [args, kwargs, embed], an unknown task, a wrong payload shape and a
    compressed job each become a dead letter; the worker stays up and runs the next job."""
    worker = workers.start(sim)
    [prepared] = prepare_jobs("sd15_text2image", schema=SchemaSource.from_url(sim.url))
    not_envelope, unknown, wrong_shape, compressed = (new_job_id() for _ in range(4))
    _publish(farm, {"a": 1}, task=RUN_JOB, task_id=not_envelope)
    _publish(farm, [[{}], {}, None], task="comfyfarm.no_such_task", task_id=unknown)
    _publish(farm, [["not a spec", 2], {"x": 1}, None], task=RUN_JOB, task_id=wrong_shape)
    spec = build_spec(prepared, farm.settings, job_id=compressed)
    # A well-formed job, but compressed: refused before it is inflated.
    farm.app.send_task(
        RUN_JOB, args=[spec.to_dict()], task_id=compressed, queue=SHARED_QUEUE,
        compression="gzip",
    )  # fmt: skip

    letters = wait_until(lambda: len(farm.dead_letters()) >= 4 and farm.dead_letters(), 30,
                         "four dead letters")  # fmt: skip
    job = farm.submit(prepared)
    result = job.wait(30)

    assert result.status == "succeeded"
    assert worker.proc.process is not None and worker.proc.process.poll() is None
    by_id = {letter.job_id: letter for letter in letters}
    assert set(by_id) == {not_envelope, unknown, wrong_shape, compressed}
    assert "[args, kwargs, embed]" in by_id[not_envelope].reason
    assert "unknown task name 'comfyfarm.no_such_task'" in by_id[unknown].reason
    assert "one JSON object argument" in by_id[wrong_shape].reason
    assert "compressed messages are refused" in by_id[compressed].reason
    assert (by_id[compressed].spec or {})["compression"] == "application/x-gzip"
    assert (by_id[not_envelope].spec or {})["body_excerpt"] == '{"a": 1}'
    assert "Unrecoverable error" not in worker.log()
