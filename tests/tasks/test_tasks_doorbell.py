"""Doorbells on a real Valkey: where a ring lands and how many tokens it can leave."""

from __future__ import annotations

import redis

from comfyfarm.tasks.app import make_app
from comfyfarm.tasks.doorbell import BELL_LIMIT, bell_key, ring, ring_on
from comfyfarm.tasks.routing import SHARED_QUEUE
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
