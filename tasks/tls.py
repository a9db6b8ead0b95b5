"""The TLS options of the farm's connections to Redis and to the sentinels, in one place.

Three kinds of client connect: Celery's broker (kombu), Celery's result backend, and the farm's
own redis-py clients (``tasks.connect``). All of them take the same redis-py ``ssl_*`` keywords,
so this module builds them once from the settings: verification always on
(``ssl_cert_reqs=required``; a ``rediss://`` URL may still say ``?ssl_cert_reqs=none`` itself),
against ``redis_ca_file`` when set, with the client certificate ``redis_cert_file``/``_key_file``
when set. Which connections use TLS: a ``rediss://`` URL, or every connection of a
``sentinel://`` URL (to the sentinels and to the master) with ``sentinel_tls``.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import parse_qs, urlsplit

from comfyfarm.tasks.settings import Settings, uses_sentinel


def uses_tls(settings: Settings, url: str) -> bool:
    """Whether connections for ``url`` (broker or backend URL) are TLS."""
    if uses_sentinel(url):
        return settings.sentinel_tls
    return urlsplit(url).scheme == "rediss"


def url_sets_tls(url: str) -> bool:
    """Whether a ``rediss://`` URL chose its own verification (``?ssl_cert_reqs=``): then its
    query string is left to decide, as Celery and redis-py read it."""
    return "ssl_cert_reqs" in parse_qs(urlsplit(url).query)


def tls_options(settings: Settings) -> dict[str, Any]:
    """redis-py/kombu/Celery ``ssl_*`` keywords of a verified TLS connection."""
    options: dict[str, Any] = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    if settings.redis_ca_file:
        options["ssl_ca_certs"] = settings.redis_ca_file
    if settings.redis_cert_file:
        options["ssl_certfile"] = settings.redis_cert_file
        options["ssl_keyfile"] = settings.redis_key_file
    return options


def connection_tls(settings: Settings, url: str) -> dict[str, Any]:
    """The TLS keywords of a redis-py client (sync or asyncio) for ``url``: the verified options
    where ``url`` is TLS and does not choose its own verification, and ``ssl=True`` for the
    master of TLS sentinels (the Sentinel pool then makes SSL connections)."""
    options: dict[str, Any] = {}
    if uses_tls(settings, url) and not url_sets_tls(url):
        options.update(tls_options(settings))
    if uses_sentinel(url) and settings.sentinel_tls:
        options["ssl"] = True
    return options
