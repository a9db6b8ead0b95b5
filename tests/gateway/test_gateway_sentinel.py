"""The gateway on a Redis Sentinel broker, for real: a primary, a replica and three sentinels
(``sentinel_kit``), a worker and the simulator, a ``comfyfarm gateway`` process given only the
``sentinel://…`` URL and the master's name, driven with comfy-sdk. Then the primary is SIGKILLed:
the gateway follows the sentinels to the promoted replica and keeps serving.

The TLS variant runs the same on a TLS-only group (own CA, client certificates) with
``COMFYFARM_SENTINEL_TLS=1``; it needs a ``redis-server`` built with TLS and is skipped without.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from comfy_sdk import OutputReady, StatusChange
from farm_kit import wait_until
from workflows_kit import invert

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability"))

from sentinel_kit import SentinelGroup  # noqa: E402
from tls_kit import NO_TLS_SERVER, TlsFiles, make_tls_files, tls_binary  # noqa: E402

from comfyfarm.services import GatewayProcess  # noqa: E402
from comfyfarm.tasks.settings import Settings  # noqa: E402


@pytest.fixture(params=["plain", "tls"])
def group(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SentinelGroup]:
    if request.param == "plain":
        with SentinelGroup() as sentinels:
            yield sentinels
        return
    binary = tls_binary()
    if binary is None:
        pytest.skip(NO_TLS_SERVER)
    tls: TlsFiles = make_tls_files(tmp_path / "tls")
    with SentinelGroup(tls=tls, binary=binary) as sentinels:
        yield sentinels


@pytest.fixture
def farm_env(group: SentinelGroup) -> dict[str, str]:
    """What a gateway and a worker need besides the URL to reach the group."""
    env = {"COMFYFARM_SENTINEL_MASTER": group.master}
    if group.tls is not None:
        env.update(COMFYFARM_SENTINEL_TLS="1", **group.tls.farm_env())
    return env


@pytest.fixture
def settings(group: SentinelGroup, key_prefix: str, out_dir: Path) -> Settings:
    """The farm's settings on the group (overrides the conftest's single Valkey)."""
    return Settings(
        broker_url=group.url,
        sentinel_master=group.master,
        storage_url=out_dir.as_uri(),
        key_prefix=key_prefix,
    )


@pytest.fixture
def sentinel_gateway(start_gateway, farm_env: dict[str, str]) -> GatewayProcess:
    return start_gateway(**farm_env)


def run_one(client) -> bytes:
    """Submit, stream the events to the end, fetch the result, download the output: its bytes."""
    job = client.submit(client.workflows.from_json(invert(width=32, height=24)))
    events = list(job.events())
    assert isinstance(events[-1], StatusChange) and events[-1].status == "succeeded", events
    assert any(isinstance(event, OutputReady) for event in events), events
    done = job.result()
    assert done.status == "succeeded"
    [output] = done.get_outputs("3")
    data = output.to_bytes()
    assert data.startswith(b"\x89PNG") and len(data) == output.size_bytes
    return bytes(data)


def healthy(gateway: GatewayProcess) -> bool:
    try:
        response = httpx.get(f"{gateway.url}/api/v2/health", timeout=5)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and response.json() == {"status": "ok", "redis": True}


def test_gateway_on_sentinel_runs_a_job_end_to_end(
    group: SentinelGroup, sentinel_gateway, sdk_factory_for, start_sim, workers, farm_env
) -> None:
    """Given only ``sentinel://…`` and the master's name, the gateway answers health, takes a
    submit, streams its events, returns the result and serves the output's bytes; the job's
    record is on the master the sentinels name."""
    workers.start(start_sim("--step-ms", "1", "--load-ms", "0"), env=farm_env)
    client = sdk_factory_for(sentinel_gateway)("acme")

    assert healthy(sentinel_gateway)
    run_one(client)

    master = group.node(group.primary)
    assert master.keys(f"{workers.key_prefix}*"), "nothing written on the master"
    master.close()


def test_gateway_keeps_serving_after_a_sentinel_failover(
    group: SentinelGroup, sentinel_gateway, sdk_factory_for, start_sim, workers, farm_env
) -> None:
    """The primary is SIGKILLed after a first job: once the sentinels promote the replica the
    gateway's health is ok again and a new job runs through it end to end (submit, events on
    the re-subscribed hub, result, download)."""
    workers.start(start_sim("--step-ms", "1", "--load-ms", "0"), env=farm_env)
    client = sdk_factory_for(sentinel_gateway)("acme")
    run_one(client)

    group.kill_primary()
    group.wait_for_failover()

    wait_until(lambda: healthy(sentinel_gateway), 30, "the gateway's health back to ok")
    run_one(client)
