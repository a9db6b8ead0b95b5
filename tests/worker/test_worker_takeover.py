"""The takeover sweep on a real Valkey and kombu's real Redis transport: which unacknowledged
deliveries it hands back to their queue (orphans only), and that it does so once."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import Celery
from kombu import Connection, Consumer, Message

from comfyfarm.tasks.app import make_app
from comfyfarm.tasks.connect import redis_client
from comfyfarm.tasks.keyspace import lease_key, takeover_key
from comfyfarm.tasks.names import RUN_JOB
from comfyfarm.tasks.registry import register_worker
from comfyfarm.tasks.routing import SHARED_QUEUE, queue_keys
from comfyfarm.tasks.settings import Settings
from comfyfarm.worker.takeover import ROLE_ROUNDS, Holdings, TakeoverSweeper, sweep_interval
from comfyfarm.worker.unacked import UnackedMessages


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(broker_url=redis_url, key_prefix=f"to-{uuid.uuid4().hex[:10]}:")


@pytest.fixture
def rds(settings: Settings) -> Iterator[redis.Redis]:
    client = redis_client(settings)
    yield client
    client.close()


@pytest.fixture
def app(settings: Settings) -> Celery:
    return make_app(settings)


class Fetcher:
    """A consumer that fetches messages of the shared queue and never acks them: to the broker,
    a worker that died holding them (its connection is only closed at the end of the test)."""

    def __init__(self, app: Celery) -> None:
        self.connection: Connection = app.connection_for_write()
        self.messages: list[Message] = []
        queue = app.amqp.queues[SHARED_QUEUE]
        self.consumer = Consumer(
            self.connection.default_channel,
            queues=[queue],
            callbacks=[lambda body, message: self.messages.append(message)],
            accept=["json"],
        )
        self.consumer.qos(prefetch_count=10)
        self.consumer.consume()

    def fetch(self) -> Message:
        count = len(self.messages)
        while len(self.messages) == count:
            self.connection.drain_events(timeout=5)
        return self.messages[-1]

    @property
    def task_consumer(self) -> Consumer:  # what Holdings reads on Celery's consumer
        return self.consumer

    def close(self) -> None:
        self.connection.release()


@pytest.fixture
def dead(app: Celery) -> Iterator[Fetcher]:
    fetcher = Fetcher(app)
    yield fetcher
    fetcher.close()


def send_job(app: Celery) -> str:
    job_id = str(uuid.uuid4())
    app.send_task(RUN_JOB, args=[{"job_id": job_id}], task_id=job_id, queue=SHARED_QUEUE)
    return job_id


def sweeper(rds: redis.Redis, app: Celery, settings: Settings, grace: float = 0.0) -> Any:
    unacked = UnackedMessages(rds, settings.key_prefix, app.connection_for_write)
    return TakeoverSweeper(
        rds, settings.key_prefix, unacked, name="sweeper", interval=1.0, grace=grace
    )


def queued(rds: redis.Redis, settings: Settings) -> int:
    return sum(int(rds.llen(key)) for key in queue_keys(settings.key_prefix, SHARED_QUEUE).values())


def test_a_delivery_no_live_worker_holds_is_handed_back_to_its_queue(rds, app, settings, dead):
    """An unacknowledged job whose worker is gone (no registry entry holds it, no lease) goes
    back to its queue, marked redelivered, and the next consumer gets it."""
    job_id = send_job(app)
    dead.fetch()
    assert queued(rds, settings) == 0

    restored = sweeper(rds, app, settings).sweep()

    assert [d.task_id for d in restored] == [job_id]
    assert queued(rds, settings) == 1
    assert rds.hlen(settings.key_prefix + "unacked") == 0
    again = Fetcher(app)
    try:
        message = again.fetch()
        assert message.headers["id"] == job_id
        assert message.delivery_info["redelivered"] is True
    finally:
        again.close()


def test_a_delivery_a_live_worker_holds_is_left_alone(rds, app, settings, dead):
    """A worker whose heartbeat lists the tag holds it (a retry waiting for its countdown, say)."""
    send_job(app)
    message = dead.fetch()
    register_worker(rds, settings.key_prefix, "alive", {"holding": [message.delivery_tag]})

    assert sweeper(rds, app, settings).sweep() == []
    assert queued(rds, settings) == 0


def test_a_job_whose_lease_is_renewed_is_left_alone(rds, app, settings, dead):
    """A lease that still exists means the job runs (its worker's heartbeat may have lapsed)."""
    job_id = send_job(app)
    dead.fetch()
    rds.set(lease_key(settings.key_prefix, job_id), "elsewhere:1", px=30_000)

    assert sweeper(rds, app, settings).sweep() == []
    assert queued(rds, settings) == 0


def test_a_delivery_fetched_within_the_grace_is_left_alone(rds, app, settings, dead):
    """A fresh fetch may not be in its worker's heartbeat yet."""
    send_job(app)
    dead.fetch()

    assert sweeper(rds, app, settings, grace=30.0).sweep() == []


def test_a_live_worker_that_does_not_report_its_holdings_pauses_the_sweep(rds, app, settings, dead):
    """Its messages cannot be told from orphans: nothing is restored while it lives."""
    send_job(app)
    dead.fetch()
    register_worker(rds, settings.key_prefix, "old-version", {"health": "ok"})

    assert sweeper(rds, app, settings).sweep() == []
    assert queued(rds, settings) == 0


def test_one_delivery_is_restored_once_however_many_sweepers_judged_it(rds, app, settings, dead):
    """Two sweepers that both judged a delivery orphaned: the first restores it; the second,
    acting after the message was fetched again by a live worker, does nothing."""
    send_job(app)
    dead.fetch()
    unacked = UnackedMessages(rds, settings.key_prefix, app.connection_for_write)
    judged = unacked.payloads(unacked.older_than(float("inf")))
    assert len(judged) == 1

    assert unacked.restore(judged[0]) is True
    again = Fetcher(app)
    try:
        again.fetch()  # same tag, new fetch time
        assert unacked.restore(judged[0]) is False
        assert queued(rds, settings) == 0
        assert rds.hlen(settings.key_prefix + "unacked") == 1
    finally:
        unacked.close()
        again.close()


def test_holdings_are_the_tags_the_consumer_has_not_acked(app, dead):
    """What a worker's heartbeat reports: kombu's record of its unacknowledged deliveries."""
    holdings = Holdings()
    assert holdings.tags() == []
    send_job(app)
    send_job(app)
    first, second = dead.fetch(), dead.fetch()
    holdings.attach(dead)
    assert sorted(holdings.tags() or []) == sorted([first.delivery_tag, second.delivery_tag])
    first.ack()
    assert holdings.tags() == [second.delivery_tag]


def test_the_farm_is_swept_every_five_seconds_at_the_default_lease() -> None:
    """A sixth of the lease, at least half a second."""
    assert sweep_interval(Settings()) == 5.0
    short = Settings(lease_seconds=1.5, visibility_timeout=8, max_job_seconds=6, max_retry_delay=4)
    assert sweep_interval(short) == 0.5


def test_one_worker_holds_the_sweeper_role_and_the_others_ask_seldom(rds, app, settings) -> None:
    """The first to ask takes the role and keeps it with each round; another worker does not
    sweep while it is held and waits a role TTL between its asks; once the holder stops renewing
    (the key expires: deleted here), the next ask takes it over."""
    unacked = UnackedMessages(rds, settings.key_prefix, app.connection_for_write)
    first = TakeoverSweeper(rds, settings.key_prefix, unacked, name="w1", interval=1.0)
    second = TakeoverSweeper(rds, settings.key_prefix, unacked, name="w2", interval=1.0)

    assert first.take_round() and not second.take_round()
    assert first.take_round() and first.take_round()  # renewed, still the sweeper
    assert first.next_wait() == 1.0 and second.next_wait() == 1.0 * ROLE_ROUNDS
    key = takeover_key(settings.key_prefix)
    assert 2000 < int(rds.pttl(key)) <= 1000 * ROLE_ROUNDS

    rds.delete(key)  # the sweeper died: its role expired
    assert second.take_round() and second.next_wait() == 1.0
    assert not first.take_round() and first.next_wait() == 1.0 * ROLE_ROUNDS  # steps back
    assert rds.get(key) in ("w2", b"w2") and second.take_round()  # the role left with w2


def test_a_sweeper_whose_role_another_took_during_a_stall_steps_back(rds, app, settings) -> None:
    """The role expired while its holder stalled and another worker took it: the old holder's
    next renewal learns it from the answer and stops sweeping."""
    unacked = UnackedMessages(rds, settings.key_prefix, app.connection_for_write)
    stalled = TakeoverSweeper(rds, settings.key_prefix, unacked, name="w1", interval=1.0)
    assert stalled.take_round()
    rds.set(takeover_key(settings.key_prefix), "w2")  # w2 took the expired role
    assert not stalled.take_round()
    assert rds.get(takeover_key(settings.key_prefix)) in ("w2", b"w2")
