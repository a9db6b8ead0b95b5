"""farm.status(): queue depths, workers from the registry, running jobs, dead letters."""

from __future__ import annotations

import argparse
import time

import pytest
from producer_helpers import PROMPT

from comfyfarm.commands import status as status_command
from comfyfarm.producer import Farm
from comfyfarm.tasks.keys import DeadLetter, Lease, WorkerInfo, push_dead_letter, register_worker
from comfyfarm.tasks.keyspace import lease_key
from comfyfarm.tasks.routing import SHARED_QUEUE, worker_queue


def test_queue_depths_by_queue_and_priority(farm: Farm) -> None:
    """Depths count every priority list; a pinned queue is found without being named."""
    farm.submit_many([PROMPT] * 3)
    farm.submit(PROMPT, priority=9)
    farm.submit(PROMPT, queue=worker_queue("gpu7"))
    status = farm.status(ping_timeout=None)
    assert status.queue_depth() == 4
    shared = next(q for q in status.queues if q.name == SHARED_QUEUE)
    assert shared.by_priority == {5: 3, 9: 1}
    assert status.queue_depth("comfyfarm.worker.gpu7") == 1
    assert status.queued == 5
    assert [q.name for q in farm.queue_depths()][0] == SHARED_QUEUE


def test_workers_running_jobs_and_dead_letters(farm: Farm) -> None:
    """Registered workers, leases of running jobs and dead letters all show up."""
    prefix = farm.settings.key_prefix
    register_worker(farm.redis, prefix, "gpu0",
                    WorkerInfo(name="gpu0", node="gpu0@box", comfy_url="http://127.0.0.1:8188",
                               queues=[worker_queue("gpu0"), SHARED_QUEUE]))  # fmt: skip
    job = farm.submit(PROMPT)
    assert Lease(farm.redis, lease_key(prefix, job.job_id), "gpu0:abc", ttl=30).acquire()
    push_dead_letter(farm.redis, prefix, DeadLetter(job_id="x", reason="retries exhausted"))
    started = time.monotonic()
    status = farm.status(ping_timeout=0.2)
    assert time.monotonic() - started < 2
    [worker] = status.workers
    assert worker.info.comfy_url == "http://127.0.0.1:8188"
    assert worker.online is False  # no Celery worker answers the ping in this test
    assert worker.heartbeat_age < 5
    assert status.queue_depth(worker_queue("gpu0")) == 0
    [running] = status.running
    assert (running.job_id, running.holder) == (job.job_id, "gpu0:abc")
    assert running.lease_remaining is not None and 0 < running.lease_remaining <= 30
    assert status.dead_letters == 1
    assert [letter.job_id for letter in farm.dead_letters()] == ["x"]


def test_empty_farm(farm: Farm) -> None:
    """A farm with nothing in it reports an empty shared queue and no workers."""
    status = farm.status(ping_timeout=None)
    assert [(q.name, q.total) for q in status.queues] == [(SHARED_QUEUE, 0)]
    assert status.workers == [] and status.running == [] and status.dead_letters == 0


def test_cancelled_queued_jobs_are_counted_apart(farm: Farm) -> None:
    """A cancelled job still in its queue is counted as cancelled, not as work waiting."""
    jobs = farm.submit_many([PROMPT] * 3)
    farm.submit(PROMPT, priority=9).cancel()
    jobs[0].cancel()
    status = farm.status(ping_timeout=None)
    assert status.queue_depth() == 4
    assert status.cancelled_queued == 2
    [shared] = [q for q in status.queues if q.name == SHARED_QUEUE]
    assert shared.cancelled == 2


def test_status_command_says_cancelled_jobs_are_dropped_later(
    farm: Farm, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`comfyfarm status` prints "N queued (M cancelled, dropped when a worker takes them)"."""
    jobs = farm.submit_many([PROMPT] * 3)
    jobs[1].cancel()
    monkeypatch.setenv("COMFYFARM_BROKER_URL", farm.settings.broker_url)
    monkeypatch.setenv("COMFYFARM_KEY_PREFIX", farm.settings.key_prefix)
    status_command.run(argparse.Namespace(json=False))
    out = capsys.readouterr().out
    assert "2 queued (1 cancelled, dropped when a worker takes them)" in out
