"""Redis is not a single point of failure: a farm on Redis Sentinel (primary, replica, three
sentinels, all real ``valkey-server`` processes) survives the primary's SIGKILL mid-run."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from farm_kit import Reaper, WorkerFactory, wait_until
from redis.sentinel import MasterNotFoundError
from sentinel_kit import (
    SentinelGroup,
    assert_client_follows_failover,
    assert_jobs_survive_failover,
    write_after,
)

from comfyfarm.producer import Farm
from comfyfarm.tasks.connect import redis_client
from comfyfarm.tasks.errors import SettingsError
from comfyfarm.tasks.settings import Settings
from comfyfarm.workflows import prepare_jobs

JOBS = 50


@pytest.fixture
def group() -> Iterator[SentinelGroup]:
    with SentinelGroup() as sentinels:
        yield sentinels


def test_a_sentinel_url_needs_the_master_name() -> None:
    """Without COMFYFARM_SENTINEL_MASTER the error names what is missing."""
    with pytest.raises(SettingsError, match="COMFYFARM_SENTINEL_MASTER"):
        Settings(broker_url="sentinel://127.0.0.1:26379/0;sentinel://127.0.0.1:26380/0")


def test_the_farms_own_client_follows_a_failover(group: SentinelGroup) -> None:
    """Leases, ledger and registry live on whatever node the sentinels name master (with the
    master's password from the URL)."""
    settings = Settings(broker_url=group.url, sentinel_master=group.master)
    client = redis_client(settings)
    assert_client_follows_failover(group, client)


def test_jobs_flowing_while_the_primary_dies_all_succeed_once(
    group: SentinelGroup, start_sim, reaper: Reaper, tmp_path: Path
) -> None:
    """50 jobs on two workers; the primary is SIGKILLed after the first ones finished: the
    sentinels promote the replica, workers and producer follow it, every job succeeds and the
    simulators executed each prompt once."""
    prefix = f"sen-{uuid.uuid4().hex[:8]}:"
    store = (tmp_path / "out").as_uri()
    settings = Settings(
        broker_url=group.url, sentinel_master=group.master, storage_url=store, key_prefix=prefix
    )
    sims = [start_sim("--job-ms", "300", "--load-ms", "0") for _ in range(2)]
    assert_jobs_survive_failover(
        group, settings, sims, {"COMFYFARM_SENTINEL_MASTER": group.master}, reaper, JOBS
    )


@pytest.fixture
def locked_group() -> Iterator[SentinelGroup]:
    with SentinelGroup(sentinel_password="sentinels-own-pw") as sentinels:
        yield sentinels


def test_sentinels_with_their_own_password_need_it(locked_group: SentinelGroup) -> None:
    """Sentinels with a requirepass of their own: without COMFYFARM_SENTINEL_PASSWORD the master
    is not found; with it the farm's client finds it and follows a failover."""
    plain = Settings(broker_url=locked_group.url, sentinel_master=locked_group.master)
    with pytest.raises(MasterNotFoundError):
        redis_client(plain).set("x", "1")
    settings = Settings(
        broker_url=locked_group.url,
        sentinel_master=locked_group.master,
        sentinel_password=locked_group.sentinel_password,
    )
    client = redis_client(settings)
    client.set("before", "1")
    locked_group.kill_primary()
    locked_group.wait_for_failover()
    wait_until(lambda: write_after(client), 20, "a write to the new master")
    assert locked_group.node(locked_group.replica).get("after") == b"1"


def test_jobs_run_through_sentinels_with_their_own_password(
    locked_group: SentinelGroup, start_sim, reaper: Reaper, tmp_path: Path
) -> None:
    """Celery's broker and result backend (workers and producer) reach password-protected
    sentinels through COMFYFARM_SENTINEL_PASSWORD: jobs run and their results come back."""
    prefix = f"senpw-{uuid.uuid4().hex[:8]}:"
    store = (tmp_path / "out").as_uri()
    password = str(locked_group.sentinel_password)
    settings = Settings(
        broker_url=locked_group.url, sentinel_master=locked_group.master, storage_url=store,
        key_prefix=prefix, sentinel_password=password,
    )  # fmt: skip
    sim = start_sim("--job-ms", "50", "--load-ms", "0")
    factory = WorkerFactory(locked_group.url, prefix, store)
    try:
        factory.start_many([sim], env={"COMFYFARM_SENTINEL_MASTER": locked_group.master,
                                       "COMFYFARM_SENTINEL_PASSWORD": password})  # fmt: skip
        jobs = prepare_jobs("empty_invert", schema=None, sweeps=["color=1..5"])
        with Farm(settings) as farm:
            handles = farm.submit_many(jobs)
            results = [handle.wait(timeout=120) for handle in handles]
    finally:
        factory.stop_all(reaper)
    assert [r.status for r in results] == ["succeeded"] * 5, [r.error for r in results]
