"""Doorbells on a real Valkey: where a ring lands and how many tokens it can leave."""

from __future__ import annotations

import redis

from comfyfarm.tasks.app import make_app
from comfyfarm.tasks.doorbell import BELL_LIMIT, bell_key, deferred_rings, ring, ring_on
from comfyfarm.tasks.names import RUN_JOB
from comfyfarm.tasks.routing import SHARED_QUEUE, worker_queue
from comfyfarm.tasks.settings import Settings


def test_a_ring_leaves_one_token_per_message_and_never_more_than_the_limit(
    settings: Settings, rds: redis.Redis
):
    """Tokens count the messages rung for, up to BELL_LIMIT whatever is rung after."""
    bell = settings.key_prefix + bell_key(SHARED_QUEUE)
    ring(rds, settings.key_prefix, {SHARED_QUEUE: 3, "other": 0})
    assert rds.llen(bell) == 3
    assert not rds.exists(settings.key_prefix + bell_key("other"))

    ring(rds, settings.key_prefix, {SHARED_QUEUE: BELL_LIMIT})
    assert rds.llen(bell) == BELL_LIMIT


def test_ring_on_a_celery_producer_uses_the_farms_key_prefix(settings: Settings, rds: redis.Redis):
    """A ring through kombu's channel lands on the same doorbell as the producer's ring."""
    app = make_app(settings)
    with app.producer_or_acquire() as producer:
        ring_on(producer, SHARED_QUEUE)

    assert rds.llen(settings.key_prefix + bell_key(SHARED_QUEUE)) == 1


def test_ring_on_never_leaves_more_than_the_limit(settings: Settings, rds: redis.Redis):
    """A queue nobody consumes keeps at most BELL_LIMIT tokens, however often it is rung."""
    bell = settings.key_prefix + bell_key(SHARED_QUEUE)
    ring(rds, settings.key_prefix, {SHARED_QUEUE: BELL_LIMIT})
    app = make_app(settings)
    with app.producer_or_acquire() as producer:
        ring_on(producer, SHARED_QUEUE)

    assert rds.llen(bell) == BELL_LIMIT


def test_every_task_message_a_farm_app_sends_rings_its_queue(settings: Settings, rds: redis.Redis):
    """send_task, apply_async, a countdown (a retry, a watch copy, a webhook's next attempt):
    each message a comfyfarm app publishes leaves one token on its own queue's doorbell."""
    app = make_app(settings)

    @app.task(name="comfyfarm.test.echo")
    def echo() -> None: ...

    app.send_task(RUN_JOB, args=[{}], queue=SHARED_QUEUE)
    app.send_task(RUN_JOB, args=[{}], queue=SHARED_QUEUE, countdown=30)
    app.send_task(RUN_JOB, args=[{}], queue=worker_queue("w1"))
    echo.apply_async()  # routed to the default queue: the shared one

    prefix = settings.key_prefix
    assert rds.llen(prefix + bell_key(SHARED_QUEUE)) == 3
    assert rds.llen(prefix + bell_key(worker_queue("w1"))) == 1


def test_publishes_inside_deferred_rings_leave_the_ringing_to_the_caller(
    settings: Settings, rds: redis.Redis
):
    """A batch rung for once by its publisher (producer.publish) gets no token per message."""
    app = make_app(settings)
    with deferred_rings():
        app.send_task(RUN_JOB, args=[{}], queue=SHARED_QUEUE)
    app.send_task(RUN_JOB, args=[{}], queue=SHARED_QUEUE)

    assert rds.llen(settings.key_prefix + bell_key(SHARED_QUEUE)) == 1
