"""Ops tests: the farm as deployed — a password-protected Redis, workers and Flower as processes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ops_kit import REDIS_PASSWORD

from comfyfarm.services import RedisServer


@pytest.fixture(scope="session")
def secure_redis() -> Iterator[RedisServer]:
    """An embedded Valkey that requires a password, as the compose file's Redis does."""
    with RedisServer(password=REDIS_PASSWORD, appendonly=True) as server:
        yield server
