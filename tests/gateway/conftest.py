"""Gateway fixtures: a real farm (Valkey, worker processes, simulators) behind a real
``comfyfarm gateway`` process, driven by the official ``comfy-sdk`` client.

The farm fixtures mirror ``tests/integration/conftest.py`` (a key prefix and output directory per
test); ``gateway`` starts the gateway on that farm with two tenants.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from farm_kit import Reaper, WorkerFactory, moto_server  # noqa: E402
from spec_check import SpecWatch  # noqa: E402
from tenants import TOKENS  # noqa: E402

from comfyfarm.services import GatewayProcess  # noqa: E402
from comfyfarm.tasks.settings import Settings  # noqa: E402


@pytest.fixture
def key_prefix() -> str:
    return f"gw-{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    path = tmp_path / "outputs"
    path.mkdir()
    return path


@pytest.fixture
def settings(redis_url: str, key_prefix: str, out_dir: Path) -> Settings:
    return Settings(broker_url=redis_url, storage_url=out_dir.as_uri(), key_prefix=key_prefix)


@pytest.fixture(scope="session")
def reaper() -> Iterator[Reaper]:
    background = Reaper()
    yield background
    background.join()


@pytest.fixture
def workers(settings: Settings, start_sim, reaper: Reaper) -> Iterator[WorkerFactory]:
    factory = WorkerFactory(settings.broker_url, settings.key_prefix, settings.storage_url)
    yield factory
    factory.stop_all(reaper)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """URL of a moto S3 server (its own process) for this session."""
    yield from moto_server()


GatewayFactory = Callable[..., GatewayProcess]


@pytest.fixture
def start_gateway(settings: Settings) -> Iterator[GatewayFactory]:
    """Factory: ``start_gateway(COMFYFARM_MAX_QUEUE_DEPTH="1")`` starts a gateway on the test's
    farm with the tenants of ``TOKENS``."""
    started: list[GatewayProcess] = []

    def start(**extra: str) -> GatewayProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("COMFYFARM_", "COMFY_"))}
        env.update(
            COMFYFARM_BROKER_URL=settings.broker_url,
            COMFYFARM_STORAGE_URL=settings.storage_url,
            COMFYFARM_KEY_PREFIX=settings.key_prefix,
            COMFYFARM_API_TOKENS=",".join(f"{t}:{k}" for t, k in TOKENS.items()),
        )
        env.update(extra)
        gateway = GatewayProcess(env=env).start()
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.stop()


@pytest.fixture
def gateway(start_gateway: GatewayFactory) -> GatewayProcess:
    return start_gateway()


@pytest.fixture
def spec() -> Iterator[SpecWatch]:
    """Collects spec violations of every response the test's SDK clients receive."""
    watch = SpecWatch()
    yield watch
    assert not watch.errors, "\n".join(watch.errors)


@pytest.fixture
def sdk_factory_for(spec: SpecWatch, monkeypatch: pytest.MonkeyPatch):
    """``sdk_factory_for(gateway)("acme")``: a comfy_sdk.Comfy client of that tenant on that
    gateway, its responses spec-checked."""
    from comfy_sdk import Comfy

    clients: list[Comfy] = []

    def factory(gateway: GatewayProcess) -> Callable[[str], Comfy]:
        def make(tenant: str = "acme") -> Comfy:
            monkeypatch.setenv("COMFY_BASE_URL", gateway.url)
            client = spec.watch(Comfy(api_key=TOKENS[tenant]))
            clients.append(client)
            return client

        return make

    yield factory
    for client in clients:
        client.close()


@pytest.fixture
def sdk(gateway: GatewayProcess, sdk_factory_for):
    """``sdk("acme")``: a comfy_sdk.Comfy client of that tenant on the test's gateway."""
    return sdk_factory_for(gateway)
