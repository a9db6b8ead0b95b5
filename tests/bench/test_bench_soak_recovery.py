"""The soak's recovery figure: seconds from a worker kill until every job it held was taken over."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from comfyfarm_bench.soak import SOAK_ENV, SoakOptions
from comfyfarm_bench.soak_recovery import Hangs, Kill, RecoveryWatch

from comfyfarm.tasks.keyspace import job_result_key, lease_key
from comfyfarm.tasks.settings import Settings


@pytest.fixture
def rds(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def prefix() -> str:
    return f"sr-{uuid.uuid4().hex[:8]}:"


def _result(finished_at: float) -> str:
    return json.dumps({"timings": {"finished_at": finished_at}})


def _wait(condition, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_jobs_a_worker_holds_are_those_whose_lease_names_it(rds, prefix) -> None:
    """Leases are ``<worker>:<random>``; another worker's (even gpu10 for gpu1) are not its own."""
    rds.set(lease_key(prefix, "a"), "gpu1:x")
    rds.set(lease_key(prefix, "b"), "gpu10:y")
    assert RecoveryWatch(rds, prefix).held_by("gpu1") == {"a": "gpu1:x"}


def test_a_kill_recovers_when_its_last_job_is_taken_over(rds, prefix) -> None:
    """One job's lease is taken by a new owner, the other's result appears after the kill: the
    kill's recovery is the later of the two."""
    watch = RecoveryWatch(rds, prefix)
    killed_at = time.time()
    watch.killed("gpu1", {"a": "gpu1:x", "b": "gpu1:y"}, at=killed_at)
    rds.set(lease_key(prefix, "a"), "gpu2:z")
    time.sleep(0.3)
    rds.set(job_result_key(prefix, "b"), _result(time.time()))
    [kill] = watch.kills
    _wait(lambda: kill.recovered)
    watch.stop()

    assert kill.recovery_seconds is not None
    assert kill.taken_over["a"] < kill.taken_over["b"] == kill.recovery_seconds
    figures = watch.to_dict()
    assert figures["kills_with_jobs"] == 1 and figures["not_recovered"] == 0
    assert figures["recovery_seconds"]["max"] == round(kill.recovery_seconds, 2)


def test_a_job_that_finished_before_the_kill_was_not_orphaned(rds, prefix) -> None:
    """Its result was written before the kill: no recovery to measure."""
    rds.set(job_result_key(prefix, "a"), _result(time.time() - 1))
    watch = RecoveryWatch(rds, prefix)
    watch.killed("gpu1", {"a": "gpu1:x"}, at=time.time())
    [kill] = watch.kills
    _wait(lambda: kill.finished_before == {"a"})
    watch.stop()
    assert kill.orphaned == set() and kill.recovery_seconds is None


def test_a_kill_whose_job_never_came_back_is_not_recovered() -> None:
    """No takeover seen: no recovery time, and the kill counts as not recovered."""
    kill = Kill("gpu1", 0.0, {"a": "gpu1:x"})
    assert not kill.recovered and kill.recovery_seconds is None


def test_the_soak_at_the_defaults_sets_no_setting_of_its_own() -> None:
    """``--defaults``: workers and producer get no COMFYFARM_* timing, so the product's apply."""
    assert SoakOptions(defaults=True).settings_env == {}
    assert SoakOptions(defaults=True).stall_timeout == Settings().stall_timeout
    assert SoakOptions().settings_env == SOAK_ENV


def test_a_kill_reports_how_long_every_simulator_was_hung_while_it_recovered() -> None:
    """Two simulators: both hung from 10 s to 14 s after the kill (the first from 5 s to 14 s,
    the second from 10 s to 20 s); the kill took 16 s to recover, 4 s of it all hung."""
    kill = Kill("gpu1", 100.0, {"a": "gpu1:x"}, taken_over={"a": 16.0})
    hangs = Hangs(2, [(105.0, 114.0), (110.0, 120.0)])
    figures = kill.to_dict(hangs)
    assert figures["recovery_seconds"] == 16.0
    assert figures["all_hung_seconds"] == 4.0
    assert "all_hung_seconds" not in kill.to_dict()


def _delivery(job_id: str) -> str:
    """An ``unacked`` entry as kombu writes it: ``[message, exchange, routing key]``."""
    return json.dumps([{"headers": {"id": job_id}, "body": ""}, "", "comfyfarm"])


def test_a_kill_is_requeued_when_its_deliveries_leave_unacked(rds, prefix) -> None:
    """The takeover's own part: the killed worker's delivery of a job leaves ``unacked`` (put back
    on its queue) before another worker takes the job; ``requeue_seconds`` is that moment,
    ``recovery_seconds`` the later takeover, and another job's delivery does not count."""
    rds.hset(f"{prefix}unacked", mapping={"t1": _delivery("a"), "t2": _delivery("other")})
    watch = RecoveryWatch(rds, prefix)
    watch.killed("gpu1", {"a": "gpu1:x"}, at=time.time())
    [kill] = watch.kills
    assert kill.tags == {"a": {"t1"}}

    rds.hdel(f"{prefix}unacked", "t1")
    _wait(lambda: "a" in kill.requeued)
    rds.set(lease_key(prefix, "a"), "gpu2:z")
    _wait(lambda: kill.recovered)
    watch.stop()

    figures = watch.to_dict()
    assert kill.requeue_seconds is not None and kill.recovery_seconds is not None
    assert kill.requeue_seconds < kill.recovery_seconds
    assert figures["requeue_seconds"]["max"] == round(kill.requeue_seconds, 2)
