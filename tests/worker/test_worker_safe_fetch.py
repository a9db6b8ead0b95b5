"""The atomic fetch (``worker.safe_fetch``) on a real Valkey through kombu's real Redis transport
and poller: a message leaves its queue only already recorded as unacknowledged, in kombu's
order, woken by a doorbell or found by the poll."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis
from celery import Celery
from kombu import Connection, Consumer, Message

from comfyfarm.tasks.app import celery_config, make_app
from comfyfarm.tasks.connect import redis_client
from comfyfarm.tasks.doorbell import BELL_LIMIT, bell_key, ring
from comfyfarm.tasks.names import RUN_JOB
from comfyfarm.tasks.routing import SHARED_QUEUE, queue_keys
from comfyfarm.tasks.settings import Settings
from comfyfarm.worker import safe_fetch

OTHER_QUEUE = "comfyfarm.worker.w1"


#: The poll these tests install (short: a message nobody rang for is found by it).
POLL = 1.0


@pytest.fixture(autouse=True)
def installed() -> Iterator[None]:
    safe_fetch.install(poll_seconds=POLL)
    yield
    safe_fetch.uninstall()


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(broker_url=redis_url, key_prefix=f"sf-{uuid.uuid4().hex[:10]}:")


@pytest.fixture
def rds(settings: Settings) -> Iterator[redis.Redis]:
    client = redis_client(settings)
    yield client
    client.close()


@pytest.fixture
def app(settings: Settings) -> Celery:
    app = make_app(settings)
    app.amqp.queues.select_add(OTHER_QUEUE)
    return app


class Fetcher:
    """A kombu consumer of ``queues`` (in that order) that never acks."""

    def __init__(self, app: Celery, queues: list[str], *, brpop_timeout: int | None = None) -> None:
        self.connection: Connection = app.connection_for_write()
        self.channel = self.connection.default_channel
        if brpop_timeout is not None:  # else the poll install() set
            self.channel.brpop_timeout = brpop_timeout
        self.messages: list[Message] = []
        self.consumer = Consumer(
            self.channel,
            queues=[app.amqp.queues[name] for name in queues],
            callbacks=[lambda body, message: self.messages.append(message)],
            accept=["json"],
        )
        self.consumer.qos(prefetch_count=100)
        self.consumer.consume()

    def fetch(self, timeout: float = 5) -> Message:
        count = len(self.messages)
        deadline = time.monotonic() + timeout
        while len(self.messages) == count:
            self.connection.drain_events(timeout=max(0.01, deadline - time.monotonic()))
        return self.messages[-1]

    def idle(self) -> None:
        """Run one empty fetch (so the next wait is on the doorbells)."""
        with pytest.raises(TimeoutError):
            self.connection.drain_events(timeout=0.2)

    def close(self) -> None:
        self.connection.release()


@pytest.fixture
def fetchers(app: Celery) -> Iterator[list[Fetcher]]:
    started: list[Fetcher] = []
    yield started
    for fetcher in started:
        fetcher.close()


def send(
    app: Celery, queue: str = SHARED_QUEUE, priority: int | None = None, countdown: int = 0
) -> str:
    job_id = str(uuid.uuid4())
    app.send_task(RUN_JOB, args=[{"job_id": job_id}], task_id=job_id, queue=queue,
                  priority=priority, countdown=countdown or None)  # fmt: skip
    return job_id


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll the server's state (a command sent and never read has no event to wait on)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def queued(rds: redis.Redis, settings: Settings, queue: str = SHARED_QUEUE) -> int:
    return sum(int(rds.llen(key)) for key in queue_keys(settings.key_prefix, queue).values())


def test_a_message_leaves_its_queue_already_recorded_as_unacked(rds, app, settings, fetchers):
    """The fetch command is sent and its reply never read (a worker killed mid-fetch): the
    message is out of its queue and in ``unacked`` exactly as kombu's ``QoS.append`` writes it."""
    job_id = send(app)
    [raw] = [rds.lindex(key, 0) for key in queue_keys(settings.key_prefix, SHARED_QUEUE).values()
             if rds.llen(key)]  # fmt: skip
    envelope = json.loads(raw)
    fetcher = Fetcher(app, [SHARED_QUEUE])
    fetchers.append(fetcher)
    rds.script_load(safe_fetch.FETCH_SCRIPT)  # as after a worker's first fetch
    before = time.time()

    fetcher.connection.transport.cycle._register_BRPOP(fetcher.channel)  # sent, not read

    tag = envelope["properties"]["delivery_tag"]
    wait_until(lambda: queued(rds, settings) == 0, 10, "the fetch to run on the server")
    stored = rds.hget(settings.key_prefix + "unacked", tag)
    assert stored is not None
    assert json.loads(stored) == [envelope, "", SHARED_QUEUE]
    assert envelope["headers"]["id"] == job_id
    assert before <= float(rds.zscore(settings.key_prefix + "unacked_index", tag)) <= time.time()


def test_the_fetched_message_is_delivered_once_and_acked_as_kombus(rds, app, settings, fetchers):
    """The consumer gets the message; the ack removes the script's record."""
    job_id = send(app)
    fetcher = Fetcher(app, [SHARED_QUEUE])
    fetchers.append(fetcher)

    message = fetcher.fetch()

    assert message.headers["id"] == job_id
    assert rds.hlen(settings.key_prefix + "unacked") == 1
    message.ack()
    assert rds.hlen(settings.key_prefix + "unacked") == 0
    assert rds.zcard(settings.key_prefix + "unacked_index") == 0


def test_messages_come_in_kombus_priority_then_queue_order(app, fetchers):
    """Priority lists first (Celery priority 0 first), then the consumer's queue order, each
    list oldest first: what kombu's BRPOP over the same keys returns."""
    sent = [
        (SHARED_QUEUE, 5), (OTHER_QUEUE, 0), (SHARED_QUEUE, 0), (OTHER_QUEUE, 9),
        (SHARED_QUEUE, 9), (OTHER_QUEUE, 5), (SHARED_QUEUE, 0),
    ]  # fmt: skip
    ids = {send(app, queue, priority): (queue, priority) for queue, priority in sent}
    fetcher = Fetcher(app, [SHARED_QUEUE, OTHER_QUEUE])
    fetchers.append(fetcher)

    order = [ids[fetcher.fetch().headers["id"]] for _ in sent]

    assert order == [
        (SHARED_QUEUE, 0), (SHARED_QUEUE, 0), (OTHER_QUEUE, 0), (SHARED_QUEUE, 5),
        (OTHER_QUEUE, 5), (SHARED_QUEUE, 9), (OTHER_QUEUE, 9),
    ]  # fmt: skip


def test_a_ring_wakes_a_consumer_waiting_on_the_doorbell(rds, app, settings, fetchers):
    """With a poll timeout far beyond the wait, only the doorbell can bring the message."""
    fetcher = Fetcher(app, [SHARED_QUEUE], brpop_timeout=60)
    fetchers.append(fetcher)
    fetcher.idle()
    job_id = send(app)
    ring(rds, settings.key_prefix, {SHARED_QUEUE: 1})

    assert fetcher.fetch(timeout=10).headers["id"] == job_id


def test_a_message_published_without_a_ring_is_found_by_the_poll(settings, fetchers):
    """A foreign Celery app's publish (it rings no doorbell) is fetched when the wait on the
    doorbells times out: within the poll install() set."""
    fetcher = Fetcher(make_app(settings), [SHARED_QUEUE])
    fetchers.append(fetcher)
    assert fetcher.channel.brpop_timeout == POLL
    fetcher.idle()
    foreign = Celery("foreign", broker=settings.broker_url)
    foreign.conf.update(celery_config(settings))
    job_id = send(foreign)
    sent_at = time.monotonic()

    assert fetcher.fetch(timeout=10).headers["id"] == job_id
    assert time.monotonic() - sent_at < POLL + 1.0


def test_a_message_a_farm_app_publishes_wakes_a_waiting_consumer_at_once(app, fetchers):
    """Any publish through a comfyfarm app (a retry, a watch copy, a webhook) rings: with a
    poll far beyond the wait, only that ring can bring the message."""
    fetcher = Fetcher(app, [SHARED_QUEUE], brpop_timeout=60)
    fetchers.append(fetcher)
    fetcher.idle()
    job_id = send(app, countdown=5)

    assert fetcher.fetch(timeout=10).headers["id"] == job_id


def test_a_restored_message_rings_its_queue_in_the_same_transaction(rds, app, settings, fetchers):
    """kombu's restore (its visibility sweep, its shutdown, the takeover) puts a token on the
    doorbell with the message: a consumer waiting with a 60 s poll takes it at once."""
    holder = Fetcher(app, [SHARED_QUEUE])
    fetchers.append(holder)
    job_id = send(app)
    message = holder.fetch()
    rds.delete(settings.key_prefix + bell_key(SHARED_QUEUE))
    waiter = Fetcher(app, [SHARED_QUEUE], brpop_timeout=60)
    fetchers.append(waiter)
    waiter.idle()

    holder.channel.qos.restore_by_tag(message.delivery_tag)

    assert waiter.fetch(timeout=10).headers["id"] == job_id


def test_doorbells_are_bounded_and_cleared_when_their_queues_are_empty(
    rds, app, settings, fetchers
):
    """A ring never leaves more than BELL_LIMIT tokens; an empty fetch deletes them."""
    bell = settings.key_prefix + bell_key(SHARED_QUEUE)
    ring(rds, settings.key_prefix, {SHARED_QUEUE: BELL_LIMIT})
    ring(rds, settings.key_prefix, {SHARED_QUEUE: 10})
    assert rds.llen(bell) == BELL_LIMIT

    fetcher = Fetcher(app, [SHARED_QUEUE])
    fetchers.append(fetcher)
    fetcher.idle()

    assert rds.exists(bell) == 0


def test_a_queue_consumed_without_acks_is_popped_as_kombu_does(rds, app, settings, fetchers):
    """Reply queues (no acks) need no record: their messages come straight from BRPOP."""
    fetcher = Fetcher(app, [SHARED_QUEUE])
    fetchers.append(fetcher)
    replies: list[Message] = []
    reply_queue = app.amqp.queues.select_add(f"replies-{uuid.uuid4().hex[:6]}")
    no_ack = Consumer(fetcher.channel, queues=[reply_queue], no_ack=True, accept=["json"],
                      callbacks=[lambda body, message: replies.append(message)])  # fmt: skip
    no_ack.consume()
    fetcher.idle()
    with app.producer_or_acquire() as producer:
        producer.publish({"reply": 1}, exchange=reply_queue.exchange,
                         routing_key=reply_queue.routing_key, declare=[reply_queue])  # fmt: skip

    deadline = time.monotonic() + 10
    while not replies and time.monotonic() < deadline:
        fetcher.connection.drain_events(timeout=5)

    assert [m.payload for m in replies] == [{"reply": 1}]
    assert rds.hlen(settings.key_prefix + "unacked") == 0


def test_a_server_without_lmpop_gets_the_same_order_from_one_rpop_per_list(
    rds, settings, redis_url, fetchers
):
    """Redis < 7 has no LMPOP (here: an ACL user denied it): the script pops list by list."""
    user = f"sf-{uuid.uuid4().hex[:6]}"
    rds.acl_setuser(user, enabled=True, passwords=["+pw"], keys=["~*"], channels=["&*"],
                    commands=["+@all", "-lmpop"])  # fmt: skip
    try:
        limited = make_app(
            settings.with_overrides(broker_url=redis_url.replace("://", f"://{user}:pw@", 1))
        )
        limited.amqp.queues.select_add(OTHER_QUEUE)
        sent = [(OTHER_QUEUE, 0), (SHARED_QUEUE, 5), (SHARED_QUEUE, 0)]
        ids = {send(limited, queue, priority): (queue, priority) for queue, priority in sent}
        fetcher = Fetcher(limited, [SHARED_QUEUE, OTHER_QUEUE])
        fetchers.append(fetcher)

        order = [ids[fetcher.fetch().headers["id"]] for _ in sent]

        assert order == [(SHARED_QUEUE, 0), (OTHER_QUEUE, 0), (SHARED_QUEUE, 5)]
        assert rds.hlen(settings.key_prefix + "unacked") == 3
    finally:
        rds.acl_deluser(user)


def test_closing_a_channel_waiting_on_its_doorbells_does_not_wait_out_the_poll(app, fetchers):
    """A worker's shutdown closes its channel: a pending wait on doorbells (at most a token)
    is dropped, not read for up to the poll as kombu reads a pending BRPOP."""
    fetcher = Fetcher(app, [SHARED_QUEUE], brpop_timeout=60)
    fetcher.idle()
    wait_until(lambda: fetcher.channel._safe_fetch["pending"] == "wait", 5, "the wait")

    started = time.monotonic()
    fetcher.close()

    assert time.monotonic() - started < 5
