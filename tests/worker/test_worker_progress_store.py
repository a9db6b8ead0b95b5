"""ProgressStore: a PROGRESS write in one round trip that readers cannot tell from Celery's own,
and that never overwrites a task that succeeded (on a real Valkey)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from celery import Celery, states

from comfyfarm.tasks.app import make_app
from comfyfarm.tasks.settings import Settings
from comfyfarm.worker.progress_store import ProgressStore


@pytest.fixture
def app(redis_url: str) -> Iterator[Celery]:
    prefix = f"pstore-{uuid.uuid4().hex[:8]}:"
    application = make_app(Settings(broker_url=redis_url, key_prefix=prefix))
    yield application
    application.close()


def test_a_progress_write_reads_back_as_celery_wrote_it(app: Celery, redis_url: str) -> None:
    """State, result, TTL and the published message are those of ``store_result``."""
    backend, task_id = app.backend, str(uuid.uuid4())
    key = backend.get_key_for_task(task_id)
    watcher = redis.Redis.from_url(redis_url).pubsub()
    watcher.subscribe(key)
    watcher.get_message(timeout=5)  # the subscribe confirmation

    assert ProgressStore(backend).store(task_id, {"phase": "running", "value": 3}, "PROGRESS")

    meta = backend.get_task_meta(task_id, cache=False)
    assert meta["status"] == "PROGRESS" and meta["result"] == {"phase": "running", "value": 3}
    assert meta["task_id"] == task_id
    client = redis.Redis.from_url(redis_url)
    assert 0 < int(client.ttl(key)) <= int(backend.expires)
    published = watcher.get_message(timeout=5)
    assert published is not None and published["data"] == client.get(key)
    watcher.close()


def test_progress_never_overwrites_a_task_that_succeeded(app: Celery) -> None:
    """A late progress update after SUCCESS is dropped, as Celery's own guard does."""
    backend, task_id = app.backend, str(uuid.uuid4())
    backend.store_result(task_id, {"status": "succeeded"}, states.SUCCESS)

    assert not ProgressStore(backend).store(task_id, {"phase": "collecting"}, "PROGRESS")

    meta = backend.get_task_meta(task_id, cache=False)
    assert meta["status"] == states.SUCCESS and meta["result"] == {"status": "succeeded"}
