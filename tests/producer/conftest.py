"""Producer tests: a real Redis (tests/conftest.py), a fresh key prefix per test, no workers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from comfyfarm.producer import Farm
from comfyfarm.tasks.settings import Settings


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(broker_url=redis_url, key_prefix=f"p-{uuid.uuid4().hex[:10]}:")


@pytest.fixture
def farm(settings: Settings) -> Iterator[Farm]:
    with Farm(settings) as instance:
        yield instance


@pytest.fixture
def rds(farm: Farm) -> redis.Redis:
    return farm.redis
