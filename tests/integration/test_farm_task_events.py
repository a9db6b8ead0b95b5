"""Flower's task events through the real path: a worker, the simulator, Celery's EventReceiver.

The worker publishes its buffered task events every 100 ms (``worker.consumer``), not every
event-loop turn: every event of every job still arrives, in order and with its fields, in
fewer ``task.multi`` messages (counted with Valkey's MONITOR); and the last job's events are
published when the worker stops right after it.
"""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from celery import Celery
from celery.events import EventReceiver
from farm_kit import CommandLog, WorkerFactory, wait_until

from comfyfarm.producer import Farm
from comfyfarm.tasks.app import make_app
from comfyfarm.tasks.names import RUN_JOB
from comfyfarm.tasks.settings import Settings
from comfyfarm.workflows import SchemaSource, prepare_jobs

#: The events the worker's main process sends for a job, in the order it sends them.
LIFECYCLE = ["task-received", "task-started", "task-succeeded"]


class Events:
    """Every event Celery's EventReceiver (Flower's) takes from the farm, in arrival order."""

    def __init__(self, app: Celery) -> None:
        self._app = app
        self._changed = threading.Condition()
        self.seen: list[dict[str, Any]] = []
        self._connection = app.connection_for_read()
        self._receiver = EventReceiver(self._connection, handlers={"*": self._on_event}, app=app)
        self._thread = threading.Thread(target=self._capture, daemon=True)

    def _capture(self) -> None:
        self._receiver.capture(limit=None, timeout=None, wakeup=False)

    def _on_event(self, event: dict[str, Any]) -> None:
        with self._changed:
            self.seen.append(event)
            self._changed.notify_all()

    def wait_for(self, check: Callable[[list[dict[str, Any]]], bool], what: str) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: check(self.seen), timeout=30), (
                f"timed out waiting for {what}; seen: {[e['type'] for e in self.seen]}"
            )

    def of(self, job_id: str) -> list[dict[str, Any]]:
        with self._changed:
            return [e for e in self.seen if e.get("uuid") == job_id and e["type"] in LIFECYCLE]

    def __enter__(self) -> Events:
        self._thread.start()
        # Redis pub/sub keeps nothing for a late subscriber: the receiver is listening once it
        # hears an event of our own (sent again until it does).
        probe = f"probe-{uuid.uuid4().hex[:8]}"
        with self._app.events.default_dispatcher(hostname=probe) as dispatcher:

            def heard() -> bool:
                dispatcher.send("worker-probe")
                with self._changed:
                    return self._changed.wait_for(
                        lambda: any(e.get("hostname") == probe for e in self.seen), timeout=0.2
                    )

            wait_until(heard, 10, "the event receiver to listen")
        return self

    def __exit__(self, *exc: object) -> None:
        self._receiver.should_stop = True
        self._thread.join(10)
        self._connection.release()


@pytest.fixture
def events(settings: Settings) -> Iterator[Events]:
    app = make_app(settings)
    with Events(app) as listening:
        yield listening
    app.close()


def prepared_jobs(sim_url: str, count: int) -> list[Any]:
    schema = SchemaSource.from_url(sim_url)
    sweep = [f"seed=1..{count}"]
    return prepare_jobs("sd15_text2image", schema=schema, params=["steps=3"], sweeps=sweep)


def test_every_event_of_every_job_arrives_in_fewer_messages(
    farm: Farm, workers: WorkerFactory, start_sim, settings: Settings, events: Events
) -> None:
    """Pipelined jobs on one worker: each job's received, started and succeeded arrive in that
    order, from the worker's node, with Flower's fields; one job's end and the next ones'
    received and started share a task.multi message (each had its own: ~3 per job)."""
    sim = start_sim("--step-ms", "50", "--load-ms", "0")
    worker = workers.start(sim)
    node = f"{worker.name}@{socket.gethostname()}"
    jobs = prepared_jobs(sim.url, 6)
    channel = f"{settings.key_prefix}/0.celeryev/task.multi"
    with CommandLog(settings.broker_url, channel) as log:
        handles = farm.submit_many(jobs)
        assert all(h.wait(60).status == "succeeded" for h in handles)
        events.wait_for(
            lambda seen: sum(e["type"] == "task-succeeded" for e in seen) == len(handles),
            "every job's task-succeeded",
        )
        log.sync()
    for handle in handles:
        mine = events.of(handle.job_id)
        assert [e["type"] for e in mine] == LIFECYCLE, mine
        received, started, succeeded = mine
        assert {e["hostname"] for e in mine} == {node}
        assert received["name"] == RUN_JOB and "seed=" in received["args"]
        assert received["clock"] < started["clock"] < succeeded["clock"]
        assert received["timestamp"] <= started["timestamp"] <= succeeded["timestamp"]
        assert succeeded["runtime"] > 0 and "result" in succeeded
    publishes = [c for c in log.commands if c.startswith(f"PUBLISH {channel} ")]
    # 7 when measured: the first two jobs' received and started in one message, then each
    # job's end with the next one's received and started; 17-18 when each loop turn published.
    # (Bounded loosely: on a loaded machine a hand-over may straddle a flush.)
    assert len(publishes) < 2 * len(handles), len(publishes)


def test_a_worker_stopping_right_after_a_job_still_sends_its_events(
    farm: Farm, workers: WorkerFactory, start_sim, settings: Settings, events: Events
) -> None:
    """SIGTERM as soon as the job's result is stored, before the 100 ms timer publishes its
    task-succeeded: the worker publishes it on the way out, before its worker-offline."""
    sim = start_sim("--step-ms", "50", "--load-ms", "0")
    worker = workers.start(sim)
    node = f"{worker.name}@{socket.gethostname()}"
    [job] = prepared_jobs(sim.url, 1)
    handle = farm.submit(job)
    assert handle.wait(60).status == "succeeded"
    worker.terminate()
    events.wait_for(
        lambda seen: any(e["type"] == "worker-offline" and e["hostname"] == node for e in seen),
        "the worker's worker-offline",
    )
    assert [e["type"] for e in events.of(handle.job_id)] == LIFECYCLE
    mine = [e["type"] for e in events.seen if e.get("hostname") == node]
    assert mine.index("task-succeeded") < mine.index("worker-offline")
