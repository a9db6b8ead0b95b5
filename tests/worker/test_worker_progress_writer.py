"""TaskProgressWriter: every update reaches the result backend, Flower's event goes with the first
update of each phase and every FLOWER_EVENT_EVERY-th one after it (on a real Valkey)."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from celery import Celery

from comfyfarm.tasks.app import make_app
from comfyfarm.tasks.models import JobProgress
from comfyfarm.tasks.settings import Settings
from comfyfarm.worker.task_progress import FLOWER_EVENT_EVERY, TaskProgressWriter

HOSTNAME = "comfyfarm@gpu-7"


@pytest.fixture
def app(redis_url: str) -> Iterator[Celery]:
    prefix = f"pwriter-{uuid.uuid4().hex[:8]}:"
    application = make_app(Settings(broker_url=redis_url, key_prefix=prefix))
    yield application
    application.close()


class Channels:
    """What the writer published: backend messages of the task and its Flower events."""

    def __init__(self, redis_url: str, app: Celery, task_id: str) -> None:
        prefix = app.conf.broker_transport_options["global_keyprefix"]
        self._pubsub = redis.Redis.from_url(redis_url).pubsub()
        self._pubsub.subscribe(app.backend.get_key_for_task(task_id))
        self._pubsub.psubscribe(f"{prefix}/*celeryev/task.*")
        for _ in range(2):  # the two subscribe confirmations
            assert self._pubsub.get_message(timeout=5) is not None
        self.backend: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []

    def read(self, backend: int, events: int) -> None:
        """Until ``backend`` backend messages and ``events`` events have arrived in all."""
        while len(self.backend) < backend or len(self.events) < events:
            message = self._pubsub.get_message(timeout=5)
            assert message is not None, f"only {self.backend} and {self.events} arrived"
            if message["type"] == "message":
                self.backend.append(json.loads(message["data"])["result"])
            elif message["type"] == "pmessage":
                envelope = json.loads(message["data"])
                self.events.append(json.loads(base64.b64decode(envelope["body"])))

    def quiet(self) -> bool:
        return self._pubsub.get_message(timeout=0.2) is None

    def close(self) -> None:
        self._pubsub.close()


def test_flower_hears_each_phase_and_every_nth_update_the_backend_every_one(
    app: Celery, redis_url: str
) -> None:
    """Producers (backend) see every update; Flower's event comes with each phase change and
    every FLOWER_EVENT_EVERY-th update of one phase, naming the phase and the worker's host."""
    task_id = str(uuid.uuid4())
    task = SimpleNamespace(app=app, backend=app.backend,
                           request=SimpleNamespace(id=task_id, hostname=HOSTNAME))  # fmt: skip
    channels = Channels(redis_url, app, task_id)
    write = TaskProgressWriter(task)  # type: ignore[arg-type]
    phases = ["submitted"] + ["running"] * (2 * FLOWER_EVENT_EVERY) + ["collecting"]
    for value, phase in enumerate(phases):
        write(JobProgress(job_id=task_id, phase=phase, value=value, worker="gpu-7"))

    channels.read(backend=len(phases), events=4)
    assert channels.quiet()
    channels.close()
    assert [meta["value"] for meta in channels.backend] == list(range(len(phases)))
    running = phases.index("running")
    assert [(event["phase"], event["value"]) for event in channels.events] == [
        ("submitted", 0),
        ("running", running),
        ("running", running + FLOWER_EVENT_EVERY),
        ("collecting", len(phases) - 1),
    ]
    for event in channels.events:
        assert event["type"] == "task-progress" and event["uuid"] == task_id
        assert event["hostname"] == HOSTNAME and "worker" not in event
