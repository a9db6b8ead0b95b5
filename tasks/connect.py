"""A plain Redis client for the farm's own keys (cancel flags, leases, worker registry).

Celery and kombu keep their own connections; this one is for ``tasks.keys`` & co. Every call has
a timeout: a dead Redis is an error after seconds, not a hang.
"""

from __future__ import annotations

import redis

from comfyfarm.tasks.settings import Settings

SOCKET_TIMEOUT = 10.0
CONNECT_TIMEOUT = 5.0


def redis_client(settings: Settings, *, url: str | None = None) -> redis.Redis:
    """A client for ``url`` (default: the broker URL) that returns ``str`` values."""
    return redis.Redis.from_url(
        url or settings.broker_url,
        decode_responses=True,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_keepalive=True,
        health_check_interval=25,
    )
