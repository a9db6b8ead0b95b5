"""The farm's own keys on a real Redis: cancel flags, the worker registry, dead letters."""

from __future__ import annotations

import time

import redis

from comfyfarm.tasks.keys import (
    DeadLetter,
    WorkerInfo,
    cancel_reason,
    cancel_requested,
    clear_cancel,
    count_dead_letters,
    list_dead_letters,
    list_workers,
    push_dead_letter,
    register_worker,
    request_cancel,
    unregister_worker,
)
from comfyfarm.tasks.keyspace import cancel_key, lease_key, worker_key
from comfyfarm.tasks.settings import Settings

JOB = "8f14e45f-ceea-467a-9575-8a2b1c3d4e5f"


def test_keys_live_under_the_prefix() -> None:
    """Every key starts with the prefix and names its purpose."""
    assert cancel_key("cf:", JOB) == f"cf:cancel:{JOB}"
    assert lease_key("cf:", JOB) == f"cf:lease:{JOB}"
    assert worker_key("cf:", "gpu0") == "cf:worker:gpu0"


def test_cancel_flag(rds: redis.Redis, settings: Settings) -> None:
    """request_cancel sets the flag once, with a reason and a TTL; clear_cancel removes it."""
    prefix = settings.key_prefix
    assert not cancel_requested(rds, prefix, JOB)
    assert request_cancel(rds, prefix, JOB, reason="user pressed stop")
    assert not request_cancel(rds, prefix, JOB)
    assert cancel_requested(rds, prefix, JOB)
    assert cancel_reason(rds, prefix, JOB) == "user pressed stop"
    assert 0 < rds.ttl(cancel_key(prefix, JOB)) <= 7 * 24 * 3600
    clear_cancel(rds, prefix, JOB)
    assert not cancel_requested(rds, prefix, JOB)


def test_registry_lists_live_workers(rds: redis.Redis, settings: Settings) -> None:
    """Registered workers are listed with their data and heartbeat; unregister removes one."""
    prefix = settings.key_prefix
    info = WorkerInfo(
        name="gpu0",
        node="gpu0@host",
        comfy_url="http://127.0.0.1:8188",
        capabilities=["sdxl"],
        queues=["comfyfarm.worker.gpu0", "comfyfarm"],
    )
    stored = register_worker(rds, prefix, "gpu0", info, ttl=30, now=1000.0)
    register_worker(rds, prefix, "gpu1", {"comfy_url": "http://127.0.0.1:8189", "healthy": False,
                                          "host": "box"}, ttl=30)  # fmt: skip
    workers = {w.name: w for w in list_workers(rds, prefix)}
    assert workers["gpu0"] == stored and stored.heartbeat == 1000.0
    assert workers["gpu1"].health == "down" and workers["gpu1"].extra == {"host": "box"}
    unregister_worker(rds, prefix, "gpu1")
    assert [w.name for w in list_workers(rds, prefix)] == ["gpu0"]


def test_registry_entries_expire(rds: redis.Redis, settings: Settings) -> None:
    """A worker that stops heart-beating disappears after its TTL."""
    prefix = settings.key_prefix
    register_worker(rds, prefix, "gpu9", WorkerInfo(name="gpu9"), ttl=0.1)
    deadline = time.monotonic() + 5
    while list_workers(rds, prefix) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert list_workers(rds, prefix) == []


def test_dead_letters_newest_first_and_capped(rds: redis.Redis, settings: Settings) -> None:
    """Dead letters list newest first, keep the spec and error, and are capped."""
    prefix = settings.key_prefix
    for number in range(5):
        push_dead_letter(
            rds, prefix,
            DeadLetter(job_id=f"job-{number}", reason="retries exhausted",
                       error={"type": "ComfyUnavailable", "message": "down"}, attempts=4,
                       spec={"job_id": f"job-{number}"}),
            max_len=3,
        )  # fmt: skip
    letters = list_dead_letters(rds, prefix, limit=10)
    assert [letter.job_id for letter in letters] == ["job-4", "job-3", "job-2"]
    assert letters[0].error == {"type": "ComfyUnavailable", "message": "down"}
    assert letters[0].failed_at > 0 and letters[0].spec == {"job_id": "job-4"}
    assert count_dead_letters(rds, prefix) == 3
    assert list_dead_letters(rds, prefix, limit=0) == []
