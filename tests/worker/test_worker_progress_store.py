"""ProgressStore: a PROGRESS write in two commands that readers cannot tell from Celery's own,
and that never overwrites a task that succeeded (on a real Valkey)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from celery import Celery, states

from comfyfarm.services import RedisServer
from comfyfarm.tasks.app import make_app
from comfyfarm.tasks.settings import Settings
from comfyfarm.worker import progress_store
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


@pytest.mark.parametrize("ifeq", [True, False], ids=["set-ifeq", "script"])
def test_a_success_written_after_our_progress_is_never_overwritten(
    app: Celery, ifeq: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Progress, then SUCCESS (the task ended), then a late progress: SUCCESS stays — whether
    the server compares with our last write (IFEQ) or the script reads the state."""
    if not ifeq:
        monkeypatch.setattr(progress_store, "set_if_equal", lambda *args, **kwargs: None)
    backend, task_id = app.backend, str(uuid.uuid4())
    store = ProgressStore(backend)
    assert store.store(task_id, {"phase": "running"}, "PROGRESS")
    assert store.store(task_id, {"phase": "running", "value": 1}, "PROGRESS")
    backend.store_result(task_id, {"status": "succeeded"}, states.SUCCESS)

    assert not store.store(task_id, {"phase": "collecting"}, "PROGRESS")

    meta = backend.get_task_meta(task_id, cache=False)
    assert meta["status"] == states.SUCCESS and meta["result"] == {"status": "succeeded"}


def test_progress_over_an_earlier_tries_state_is_written(app: Celery) -> None:
    """A retried job's first progress finds the RETRY state of the try before: it is replaced."""
    backend, task_id = app.backend, str(uuid.uuid4())
    backend.store_result(task_id, {"exc_type": "Boom"}, states.RETRY)

    assert ProgressStore(backend).store(task_id, {"phase": "submitted"}, "PROGRESS")

    assert backend.get_task_meta(task_id, cache=False)["status"] == "PROGRESS"


def test_a_progress_write_costs_a_set_and_a_publish() -> None:
    """Three writes of one job: three SET and three PUBLISH, nothing else (no GET, no script)."""
    with RedisServer() as server:
        application = make_app(Settings(broker_url=server.url, key_prefix="cost:"))
        store, task_id = ProgressStore(application.backend), str(uuid.uuid4())
        store.store(task_id, {"phase": "submitted"}, "PROGRESS")  # connects (HELLO, ...)
        client = redis.Redis.from_url(server.url)
        client.config_resetstat()
        for value in range(3):
            assert store.store(task_id, {"phase": "running", "value": value}, "PROGRESS")
        stats = client.info("commandstats")
        calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
        calls.pop("config|resetstat", None)
        calls.pop("info", None)
        assert calls == {"set": 3, "publish": 3}
        client.close()
        application.close()
