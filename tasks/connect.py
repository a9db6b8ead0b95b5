"""A plain Redis client for the farm's own keys (cancel flags, leases, worker registry).

Celery and kombu keep their own connections; this one is for ``tasks.keys`` & co. Every call has
a timeout: a dead Redis is an error after seconds, not a hang. Its connections do not announce
the client library (``CLIENT SETINFO`` LIB-NAME and LIB-VER: two commands on every connection
redis-py opens, for ``CLIENT LIST`` only).

With Redis Sentinel (``sentinel://h1:26379/0;sentinel://h2:26379/0`` and
``settings.sentinel_master``) the client asks the sentinels for the current master and asks again
after a connection error, so it follows a failover as Celery's own connections do. The URL's
password (and user) are the master's; sentinels that need their own password get
``settings.sentinel_password``. TLS (``rediss://``, or ``settings.sentinel_tls`` for the sentinels
and the master alike) takes its options from ``tasks.tls``: certificates are always verified.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.sentinel import Sentinel

from comfyfarm.tasks.settings import Settings, sentinel_urls, uses_sentinel
from comfyfarm.tasks.tls import connection_tls, tls_options, uses_tls

SOCKET_TIMEOUT = 10.0
CONNECT_TIMEOUT = 5.0
#: The redis-py options that turn off ``CLIENT SETINFO`` on connect: ``driver_info`` where
#: redis-py has it (it deprecates ``lib_name``/``lib_version``), those two before.
WITHOUT_CLIENT_INFO: dict[str, Any] = (
    {"driver_info": None}
    if hasattr(redis, "DriverInfo")
    else {"lib_name": None, "lib_version": None}
)
#: What a TLS failure that no retry will mend says (verification, a refused client certificate).
_TLS_REFUSED = re.compile(r"CERTIFICATE_VERIFY_FAILED|certificate verify failed|\[SSL: |alert")


def redis_client(
    settings: Settings, *, url: str | None = None, decode_responses: bool = True
) -> redis.Redis:
    """A client for ``url`` (default: the broker URL) that returns ``str`` values (``bytes`` with
    ``decode_responses=False``)."""
    target = url or settings.broker_url
    options: dict[str, Any] = {
        "decode_responses": decode_responses,
        "socket_timeout": SOCKET_TIMEOUT,
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_keepalive": True,
        "health_check_interval": 25,
        **WITHOUT_CLIENT_INFO,
    }
    options.update(connection_tls(settings, target))
    if uses_sentinel(target):
        return _master(target, settings, options)
    return redis.Redis.from_url(target, **options)


def sentinel_target(url: str) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """The sentinels' addresses of a ``sentinel://…;sentinel://…`` URL, and the master's
    ``username``/``password``/``db`` (the first part's: the URL's password is the master's)."""
    parts = [urlsplit(part) for part in sentinel_urls(url)]
    first = parts[0]
    auth: dict[str, Any] = {
        "username": unquote(first.username) if first.username else None,
        "password": unquote(first.password) if first.password else None,
        "db": int(first.path.strip("/") or 0),
    }
    return [(part.hostname or "127.0.0.1", part.port or 26379) for part in parts], auth


def _master(url: str, settings: Settings, options: dict[str, Any]) -> redis.Redis:
    nodes, auth = sentinel_target(url)
    sentinel = Sentinel(
        nodes,
        socket_timeout=CONNECT_TIMEOUT,
        socket_connect_timeout=CONNECT_TIMEOUT,
        sentinel_kwargs=sentinel_kwargs(settings),
    )
    client: redis.Redis = sentinel.master_for(settings.sentinel_master, **auth, **options)
    return client


def sentinel_kwargs(settings: Settings) -> dict[str, Any] | None:
    """Options of the connections to the sentinels themselves (not to the master): their own
    password, TLS. None: the sentinels need neither (redis-py then copies the master's socket
    options)."""
    if not settings.sentinel_password and not settings.sentinel_tls:
        return None
    kwargs: dict[str, Any] = {
        "socket_timeout": CONNECT_TIMEOUT,
        "socket_connect_timeout": CONNECT_TIMEOUT,
    }
    if settings.sentinel_password:
        kwargs["password"] = settings.sentinel_password
    if settings.sentinel_tls:
        kwargs.update(ssl=True, **tls_options(settings))
    return kwargs


def check_tls_trust(settings: Settings) -> None:
    """Raise the broker's connection error when TLS to it (or to its sentinels) fails in a way
    no retry mends — a certificate that does not verify against ``redis_ca_file``, a client
    certificate refused — so a worker stops with one line instead of retrying for ever. A broker
    that is merely down is left to Celery's retries, as without TLS."""
    if not (uses_tls(settings, settings.broker_url) or uses_tls(settings, settings.result_backend)):
        return
    for url in dict.fromkeys((settings.broker_url, settings.result_backend)):
        client = redis_client(settings, url=url)
        try:
            client.ping()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if _TLS_REFUSED.search(str(exc)):
                raise
        finally:
            client.close()
