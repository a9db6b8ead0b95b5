"""The submission ledger (``worker.ledger``): a first try costs Redis one MGET before its POST
(the entry and the job's cancel flag) and one SET after it, counts stay what ``max_retries``
counts, and entries of the format before (a URL, the count in its own key) are still read
(a private Valkey, so its command counters are this test's alone)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from comfyfarm.services import RedisServer
from comfyfarm.tasks.control import request_cancel
from comfyfarm.tasks.keyspace import cancel_key, submission_count_key, submission_key
from comfyfarm.worker.cancel_watch import CancelWatch
from comfyfarm.worker.ledger import JobLedger, RedisLedger

GPU_1, GPU_2 = "http://gpu-1:8188", "http://gpu-2:8188"


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer() as private:
        yield private


@pytest.fixture
def rds(server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(server.url, socket_timeout=10)
    yield client
    client.close()


@pytest.fixture
def prefix() -> str:
    return f"ledger-{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def ledger(rds: redis.Redis, prefix: str) -> RedisLedger:
    return RedisLedger(rds, prefix, ttl=600)


def calls(rds: redis.Redis) -> dict[str, int]:
    """Commands run since the last ``reset`` (the stats commands themselves left out)."""
    stats = rds.info("commandstats")
    counted = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
    return {k: v for k, v in counted.items() if k not in ("info", "config|resetstat")}


def reset(rds: redis.Redis) -> None:
    rds.config_resetstat()


def job_ledger(ledger: RedisLedger, prefix: str, job_id: str) -> JobLedger:
    return JobLedger(ledger, job_id, cancel_key(prefix, job_id))


def test_a_first_try_costs_one_mget_and_one_set(
    rds: redis.Redis, ledger: RedisLedger, prefix: str
) -> None:
    """The try's first cancel check, ``where`` and ``record``: MGET before the POST, SET after."""
    job_id = str(uuid.uuid4())
    view = job_ledger(ledger, prefix, job_id)
    rds.ping()
    reset(rds)

    assert view.cancel_requested() is False
    assert view.where(job_id) is None
    view.record(job_id, GPU_1)

    assert calls(rds) == {"mget": 1, "set": 1}
    assert ledger.where(job_id) == GPU_1
    assert ledger.submissions(job_id, unknown=-1) == 1
    assert 0 < int(rds.ttl(submission_key(prefix, job_id))) <= 600


def test_the_cancel_flag_is_read_with_the_entry(ledger: RedisLedger, rds: redis.Redis) -> None:
    prefix = ledger._prefix
    job_id = str(uuid.uuid4())
    request_cancel(rds, prefix, job_id, reason="test")
    assert job_ledger(ledger, prefix, job_id).cancel_requested() is True


def test_every_post_is_counted_across_tries(ledger: RedisLedger, prefix: str) -> None:
    """Each try has its own view; the count goes on from what the try before recorded, and the
    entry names the ComfyUI of the last POST."""
    job_id = str(uuid.uuid4())
    for url in (GPU_1, GPU_2, GPU_2):
        view = job_ledger(ledger, prefix, job_id)
        view.cancel_requested()
        view.record(job_id, url)
    assert ledger.where(job_id) == GPU_2
    assert ledger.submissions(job_id, unknown=-1) == 3
    assert ledger.submissions(str(uuid.uuid4()), unknown=-1) == 0


def test_an_entry_of_the_format_before_is_read_and_counted_on(
    rds: redis.Redis, ledger: RedisLedger, prefix: str
) -> None:
    """Written by a worker before the upgrade: a plain URL, the count in ``:count``."""
    job_id = str(uuid.uuid4())
    rds.set(submission_key(prefix, job_id), GPU_1, ex=600)
    rds.set(submission_count_key(prefix, job_id), 2, ex=600)

    view = job_ledger(ledger, prefix, job_id)
    assert view.cancel_requested() is False
    assert view.where(job_id) == GPU_1
    assert ledger.submissions(job_id, unknown=-1) == 2

    view.record(job_id, GPU_2)
    assert ledger.where(job_id) == GPU_2
    assert ledger.submissions(job_id, unknown=-1) == 3


def test_in_a_mixed_fleet_the_larger_of_the_two_counts_is_taken(
    rds: redis.Redis, ledger: RedisLedger, prefix: str
) -> None:
    """During an upgrade a job may be counted in both formats: the JSON count of new workers
    and the ``:count`` key that old ones INCR. The larger is taken. (An old worker's SET of its
    plain URL replaces the JSON entry, and with it the new workers' count: the known limit of
    a rolling upgrade: the new workers' POSTs before it are no longer counted.)"""
    job_id = str(uuid.uuid4())
    rds.set(submission_count_key(prefix, job_id), 1, ex=600)  # an old worker's first POST
    ledger.record(job_id, GPU_1)
    ledger.record(job_id, GPU_1)
    assert ledger.submissions(job_id, unknown=-1) == 3
    rds.set(submission_count_key(prefix, job_id), 5, ex=600)
    assert ledger.submissions(job_id, unknown=-1) == 5


def test_an_unreadable_entry_reads_as_no_entry(
    rds: redis.Redis, ledger: RedisLedger, prefix: str
) -> None:
    job_id = str(uuid.uuid4())
    rds.set(submission_key(prefix, job_id), "{not json", ex=600)
    assert ledger.where(job_id) is None
    assert ledger.submissions(job_id, unknown=-1) == 0


def test_store_failures_are_counted_apart(ledger: RedisLedger) -> None:
    job_id = str(uuid.uuid4())
    ledger.record(job_id, GPU_1)
    assert [ledger.count_store_failure(job_id) for _ in range(2)] == [1, 2]
    assert ledger.submissions(job_id, unknown=-1) == 1


def test_the_first_cancel_check_is_the_ledgers_mget_not_an_exists(
    rds: redis.Redis, ledger: RedisLedger, prefix: str
) -> None:
    """A job's first cancel check reads through its ledger view: no EXISTS of its own, and a
    flag set before the job started is found."""
    watch = CancelWatch(rds, prefix).start()
    try:
        deadline = time.monotonic() + 10
        while not watch.subscribed:  # then its re-check of watched jobs (EXISTS) is behind us
            assert time.monotonic() < deadline, "timed out waiting for the subscription"
            time.sleep(0.01)
        job_id = str(uuid.uuid4())
        # The flag alone, as a cancel published before the job was watched leaves it.
        rds.set(cancel_key(prefix, job_id), '{"reason": "early"}')
        check = watch.check(job_id, first_ask=job_ledger(ledger, prefix, job_id).cancel_requested)
        reset(rds)
        assert check() is True
        assert calls(rds).get("mget") == 1 and "exists" not in calls(rds)
        check.close()
    finally:
        watch.close()
