"""The gateway's redis.asyncio clients, built as ``tasks.connect`` builds the farm's sync ones.

Every async client of the gateway (job records, results, the event hub's ONE pub/sub
subscription, which comes from the results client) is made here, so the broker URL means the
same to the gateway as to the workers: ``redis://``, ``rediss://`` with the farm's TLS options
(``tasks.tls``: verified, ``COMFYFARM_REDIS_CA_FILE``, client certificate), or Redis Sentinel
(``sentinel://h1:26379/0;sentinel://h2:26379/0`` with ``COMFYFARM_SENTINEL_MASTER``,
``_SENTINEL_PASSWORD``, ``_SENTINEL_TLS``). With Sentinel each new connection asks the sentinels
for the current master, so after a connection error (the master died) the client and the event
hub's re-subscription reach the promoted one.

The pool blocks past ``MAX_CONNECTIONS`` rather than opening one connection per concurrent
request: a burst of event streams must not mean a burst of connections.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

from comfyfarm.tasks.connect import CONNECT_TIMEOUT, sentinel_kwargs, sentinel_target
from comfyfarm.tasks.settings import Settings, uses_sentinel
from comfyfarm.tasks.tls import connection_tls

MAX_CONNECTIONS = 32
#: How long a request waits for a free pooled connection before it is an error.
POOL_TIMEOUT = 10.0


class BlockingSentinelPool(SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """A pool of connections to the master the sentinels name that, like
    ``BlockingConnectionPool``, waits for a free connection instead of failing at the cap."""


def async_client(settings: Settings, *, url: str | None = None) -> aioredis.Redis:
    """A ``bytes`` client for ``url`` (default: the broker URL)."""
    target = url or settings.broker_url
    options: dict[str, Any] = {
        "max_connections": MAX_CONNECTIONS,
        "timeout": POOL_TIMEOUT,
        "socket_connect_timeout": CONNECT_TIMEOUT,
    }
    options.update(connection_tls(settings, target))
    if uses_sentinel(target):
        return _master(target, settings, options)
    pool = aioredis.BlockingConnectionPool.from_url(target, **options)
    return aioredis.Redis(connection_pool=pool)


def _master(url: str, settings: Settings, options: dict[str, Any]) -> aioredis.Redis:
    nodes, auth = sentinel_target(url)
    # Without sentinel_kwargs redis-py would give the sentinels the master's (no) socket timeout.
    to_sentinels = sentinel_kwargs(settings) or {
        "socket_timeout": CONNECT_TIMEOUT,
        "socket_connect_timeout": CONNECT_TIMEOUT,
    }
    sentinel = Sentinel(nodes, sentinel_kwargs=to_sentinels)
    client: aioredis.Redis = sentinel.master_for(
        settings.sentinel_master, connection_pool_class=BlockingSentinelPool, **auth, **options
    )
    return client
