"""CancelWatch: cancels pushed over one subscription, asked for once, never lost while it is down
(a private Valkey, so its command counters and clients are this test's alone)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis

from comfyfarm.services import RedisServer
from comfyfarm.tasks.control import request_cancel
from comfyfarm.tasks.keyspace import cancel_channel
from comfyfarm.worker.cancel_watch import CancelWatch


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
    return f"cw-{uuid.uuid4().hex[:8]}:"


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def exists_calls(rds: redis.Redis) -> int:
    return int(rds.info("commandstats").get("cmdstat_exists", {}).get("calls", 0))


def kill_subscriptions(rds: redis.Redis) -> None:
    rds.execute_command("CLIENT", "KILL", "TYPE", "pubsub")


def test_a_cancel_is_pushed_after_one_question(rds: redis.Redis, prefix: str) -> None:
    """The first check asks Redis; later checks ask nothing while subscribed; the cancel arrives
    by the channel."""
    watch = CancelWatch(rds, prefix).start()
    wait_for(lambda: watch.subscribed, 10, "the subscription")
    check = watch.check("job-1")
    before = exists_calls(rds)
    assert check() is False
    assert [check() for _ in range(200)] == [False] * 200
    assert exists_calls(rds) - before == 1

    assert request_cancel(rds, prefix, "job-1")

    wait_for(check, 5, "the pushed cancel")
    assert exists_calls(rds) - before == 1
    check.close()
    watch.close()


def test_a_cancel_sent_before_the_job_started_is_found_by_its_question(
    rds: redis.Redis, prefix: str
) -> None:
    watch = CancelWatch(rds, prefix).start()
    request_cancel(rds, prefix, "job-early")
    check = watch.check("job-early")
    assert check() is True
    check.close()
    watch.close()


def test_a_cancel_sent_while_the_subscription_is_down_is_found_by_polling(
    rds: redis.Redis, prefix: str
) -> None:
    """Subscription killed and kept down: the job asks Redis every interval meanwhile."""
    watch = CancelWatch(rds, prefix, interval=0.05, resubscribe_pause=3600).start()
    wait_for(lambda: watch.subscribed, 10, "the subscription")
    check = watch.check("job-2")
    assert check() is False
    kill_subscriptions(rds)
    wait_for(lambda: not watch.subscribed, 10, "the lost subscription")

    request_cancel(rds, prefix, "job-2")

    wait_for(check, 5, "the cancel, by polling")
    check.close()
    watch.close()


def test_a_cancel_published_while_unsubscribed_is_found_on_resubscribing(
    rds: redis.Redis, prefix: str
) -> None:
    """No polling at all (interval of an hour): only the question asked for every watched job
    after the subscription is back can find the cancel whose message nobody received."""
    watch = CancelWatch(rds, prefix, interval=3600, resubscribe_pause=0.5).start()
    wait_for(lambda: watch.subscribed, 10, "the subscription")
    check = watch.check("job-3")
    assert check() is False
    other = watch.check("job-4")
    assert other() is False
    kill_subscriptions(rds)
    request_cancel(rds, prefix, "job-3")  # lost for the channel: the subscription is gone

    wait_for(check, 10, "the cancel, found after resubscribing")
    assert other() is False
    check.close()
    other.close()
    watch.close()


def test_a_redis_error_reads_as_not_cancelled(prefix: str) -> None:
    """The flag cannot be read: the job goes on (asked again at the next check)."""

    class Down(redis.Redis):
        def execute_command(self, *args, **options):  # type: ignore[no-untyped-def]
            raise redis.ConnectionError("connection refused")

    watch = CancelWatch(Down(), prefix, resubscribe_pause=3600)
    check = watch.check("job-5")
    assert check() is False
    check.close()
    watch.close()


def test_a_closed_check_stops_watching_its_job(rds: redis.Redis, prefix: str) -> None:
    """A cancel of a job this process no longer runs is not kept."""
    watch = CancelWatch(rds, prefix).start()
    wait_for(lambda: watch.subscribed, 10, "the subscription")
    check = watch.check("job-6")
    check()
    check.close()
    request_cancel(rds, prefix, "job-6")
    marker = watch.check("job-marker")
    marker()
    request_cancel(rds, prefix, "job-marker")
    wait_for(marker, 5, "the marker's cancel")  # messages arrive in order: job-6's came first
    assert "job-6" not in watch._cancelled
    marker.close()
    watch.close()


def test_start_returns_subscribed_so_a_warm_up_leaves_the_first_job_a_connection(
    rds: redis.Redis, server: RedisServer, prefix: str
) -> None:
    """A pool process's warm-up starts the watch, then opens its client's connection (PING):
    the subscription is on the server when start returns (asked at once on a connection
    already open), and the first job's commands use the connection warm-up opened."""
    rds.ping()
    client = redis.Redis.from_url(server.url, socket_timeout=10)
    try:
        watch = CancelWatch(client, prefix).start()
        assert rds.pubsub_numsub(cancel_channel(prefix))[0][1] == 1
        client.ping()
        opened = int(rds.info("stats")["total_connections_received"])

        check = watch.check("job-1")
        assert check() is False
        client.set(prefix + "lease", "held")

        assert int(rds.info("stats")["total_connections_received"]) == opened
        watch.close()
    finally:
        client.close()
