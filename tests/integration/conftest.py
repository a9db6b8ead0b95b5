"""Farm fixtures: a producer ``Farm`` and real worker processes on a key prefix of their own.

Every test gets a fresh key prefix (queues, results, leases, registry), so tests sharing the
session's Redis never see each other's jobs, and its own output directory.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from farm_kit import Reaper, WorkerFactory, moto_server

from comfyfarm.producer import Farm
from comfyfarm.services import SimulatorProcess
from comfyfarm.tasks.settings import Settings

SimFactory = Callable[..., SimulatorProcess]


@pytest.fixture
def key_prefix() -> str:
    return f"it-{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    path = tmp_path / "outputs"
    path.mkdir()
    return path


@pytest.fixture
def settings(redis_url: str, key_prefix: str, out_dir: Path) -> Settings:
    return Settings(broker_url=redis_url, storage_url=out_dir.as_uri(), key_prefix=key_prefix)


@pytest.fixture
def farm(settings: Settings) -> Iterator[Farm]:
    with Farm(settings) as farm:
        yield farm


@pytest.fixture(scope="session")
def reaper() -> Iterator[Reaper]:
    """Waits for stopped workers in the background; every one has exited when the session ends."""
    background = Reaper()
    yield background
    background.join()


@pytest.fixture
def workers(settings: Settings, start_sim: SimFactory, reaper: Reaper) -> Iterator[WorkerFactory]:
    """Factory: ``workers.start(sim)`` starts a worker on the test's farm. At the end of the test
    every worker is sent SIGTERM (before the simulators stop) and reaped in the background; they
    share no keys with later tests."""
    factory = WorkerFactory(settings.broker_url, settings.key_prefix, settings.storage_url)
    yield factory
    factory.stop_all(reaper)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """URL of a moto S3 server (its own process) for this session."""
    yield from moto_server()
