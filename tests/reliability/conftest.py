"""Fixtures for the fault-injection tests: real workers, simulators and Redis, short timeouts.

The helpers of the farm tests (``farm_kit``: worker processes, ``wait_until``, simulator
accounting) are shared, not copied: that folder is put on ``sys.path`` here.

Every test gets its own key prefix and output directory. ``FAST`` is the environment of a farm
whose recovery runs in seconds instead of minutes: a dead worker's job is re-queued after
``COMFYFARM_VISIBILITY_TIMEOUT`` (8 s) by a sweep that runs every 0.5 s, and its lease expires
after 1.5 s. Producers use the same settings (``settings`` fixture), as they would in a deployment.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from farm_kit import Reaper, WorkerFactory  # noqa: E402

from comfyfarm.producer import Farm  # noqa: E402
from comfyfarm.services import SimulatorProcess  # noqa: E402
from comfyfarm.tasks.settings import Settings  # noqa: E402

SimFactory = Callable[..., SimulatorProcess]

#: Recovery in seconds: jobs run at most 6 s, a dead worker's job is swept back after 8 s.
FAST = {
    "COMFYFARM_MAX_JOB_SECONDS": "6",
    "COMFYFARM_VISIBILITY_TIMEOUT": "8",
    "COMFYFARM_RESTORE_INTERVAL": "0.5",
    "COMFYFARM_LEASE_SECONDS": "1.5",
    "COMFYFARM_STALL_TIMEOUT": "3",
    "COMFYFARM_MAX_RETRIES": "2",
    "COMFYFARM_MAX_RETRY_DELAY": "4",
}


@pytest.fixture
def key_prefix() -> str:
    return f"rel-{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    path = tmp_path / "outputs"
    path.mkdir()
    return path


@pytest.fixture
def settings(redis_url: str, key_prefix: str, out_dir: Path) -> Settings:
    env = {
        **FAST,
        "COMFYFARM_BROKER_URL": redis_url,
        "COMFYFARM_STORAGE_URL": out_dir.as_uri(),
        "COMFYFARM_KEY_PREFIX": key_prefix,
    }
    return Settings.from_env(env)


@pytest.fixture
def farm(settings: Settings) -> Iterator[Farm]:
    with Farm(settings) as farm:
        yield farm


@pytest.fixture(scope="session")
def reaper() -> Iterator[Reaper]:
    background = Reaper()
    yield background
    background.join()


@pytest.fixture
def workers(settings: Settings, start_sim: SimFactory, reaper: Reaper) -> Iterator[WorkerFactory]:
    """``workers.start(sim, name, env=...)``: real worker processes with the ``FAST`` settings
    (``env`` adds to them); all sent SIGTERM at the end of the test and reaped in the background."""
    factory = _FastWorkers(settings.broker_url, settings.key_prefix, settings.storage_url)
    yield factory
    factory.stop_all(reaper)


class _FastWorkers(WorkerFactory):
    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return super().env({**FAST, **(extra or {})})
