"""Contract-test fixtures: the real Redis of tests/conftest.py under a fresh key prefix."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from comfyfarm.tasks.connect import redis_client
from comfyfarm.tasks.settings import Settings


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(broker_url=redis_url, key_prefix=f"t-{uuid.uuid4().hex[:10]}:")


@pytest.fixture
def rds(settings: Settings) -> Iterator[redis.Redis]:
    client = redis_client(settings)
    yield client
    client.close()
