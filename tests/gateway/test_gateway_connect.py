"""How the gateway's async clients are built from the farm's settings (no server needed: the
pools are only inspected; the real path is ``test_gateway_sentinel``)."""

from __future__ import annotations

import ssl
from pathlib import Path

import redis.asyncio as aioredis
from redis.asyncio.connection import SSLConnection
from redis.asyncio.sentinel import SentinelManagedConnection, SentinelManagedSSLConnection

from comfyfarm.gateway.connect import MAX_CONNECTIONS, BlockingSentinelPool, async_client
from comfyfarm.tasks.settings import Settings

SENTINELS = "sentinel://:master-pw@10.0.0.1:26379/2;sentinel://10.0.0.2:26380/2"


def test_a_sentinel_url_gives_a_blocking_pool_on_the_named_master() -> None:
    """``sentinel://…;sentinel://…``: every sentinel is asked, for the master named by the
    settings, with the URL's password and db; the pool waits at the cap instead of failing."""
    client = async_client(Settings(broker_url=SENTINELS, sentinel_master="farm"))
    pool = client.connection_pool

    assert isinstance(pool, BlockingSentinelPool)
    assert isinstance(pool, aioredis.BlockingConnectionPool)
    assert pool.service_name == "farm" and pool.is_master
    assert pool.max_connections == MAX_CONNECTIONS
    assert pool.connection_class is SentinelManagedConnection
    assert pool.connection_kwargs["password"] == "master-pw"
    assert pool.connection_kwargs["db"] == 2
    sentinels = pool.sentinel_manager.sentinels
    addresses = [(s.connection_pool.connection_kwargs["host"],
                  s.connection_pool.connection_kwargs["port"]) for s in sentinels]  # fmt: skip
    assert addresses == [("10.0.0.1", 26379), ("10.0.0.2", 26380)]


def pem_files(folder: Path) -> dict[str, str]:
    """Settings naming a CA file and a client certificate (only their existence is checked)."""
    files = {}
    for field, name in (("redis_ca_file", "ca.pem"), ("redis_cert_file", "client.pem"),
                        ("redis_key_file", "client.key")):  # fmt: skip
        path = folder / name
        path.write_text("-----BEGIN CERTIFICATE-----\n")
        files[field] = str(path)
    return files


def test_sentinel_tls_verifies_the_master_and_the_sentinels(tmp_path: Path) -> None:
    """``sentinel_tls``: the master's connections and the sentinels' are TLS, verified against
    the CA file, presenting the client certificate; the sentinel password goes to the sentinels
    only."""
    settings = Settings(
        broker_url=SENTINELS,
        sentinel_master="farm",
        sentinel_tls=True,
        sentinel_password="sentinel-pw",
        **pem_files(tmp_path),
    )
    pool = async_client(settings).connection_pool
    ca, cert = settings.redis_ca_file, settings.redis_cert_file

    assert pool.connection_class is SentinelManagedSSLConnection
    assert pool.connection_kwargs["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    assert pool.connection_kwargs["ssl_ca_certs"] == ca
    assert pool.connection_kwargs["ssl_certfile"] == cert
    assert pool.connection_kwargs["password"] == "master-pw"
    to_sentinel = pool.sentinel_manager.sentinels[0].connection_pool
    assert issubclass(to_sentinel.connection_class, SSLConnection)
    assert to_sentinel.connection_kwargs["ssl_ca_certs"] == ca
    assert to_sentinel.connection_kwargs["password"] == "sentinel-pw"


def test_a_rediss_url_gets_the_farms_tls_options(tmp_path: Path) -> None:
    """``rediss://``: verified TLS with the CA file, as the workers' clients."""
    ca = pem_files(tmp_path)["redis_ca_file"]
    settings = Settings(broker_url="rediss://127.0.0.1:6380/0", redis_ca_file=ca)
    pool = async_client(settings).connection_pool

    assert type(pool) is aioredis.BlockingConnectionPool
    assert issubclass(pool.connection_class, SSLConnection)
    assert pool.connection_kwargs["ssl_ca_certs"] == ca
    assert pool.connection_kwargs["ssl_cert_reqs"] == ssl.CERT_REQUIRED


def test_a_redis_url_and_another_result_backend() -> None:
    """A plain URL stays a plain blocking pool; ``url`` picks another server (the backend)."""
    settings = Settings(broker_url="redis://127.0.0.1:6379/0")
    client = async_client(settings, url="redis://127.0.0.1:6390/1")
    pool = client.connection_pool

    assert type(pool) is aioredis.BlockingConnectionPool
    assert pool.connection_kwargs["port"] == 6390 and pool.connection_kwargs["db"] == 1
    assert "ssl_ca_certs" not in pool.connection_kwargs
