"""The bind rule of a gateway without tokens: loopback only (as ``comfyfarm flower`` without
basic auth). Its own module, free of aiohttp, so that the supervisor of ``--processes N`` can
check it without loading the application (``comfyfarm.gateway.auth`` re-exports both names)."""

from __future__ import annotations

from collections.abc import Mapping


class GatewayRefused(Exception):
    """Raised when the gateway would serve a non-loopback address without any token."""

    def __init__(self, *, host: str) -> None:
        self.host = host
        super().__init__(
            f"refusing to serve the gateway on {host!r} without auth: set "
            "COMFYFARM_API_TOKENS=tenant:token[,tenant2:token2], or bind 127.0.0.1"
        )


def check_bind(host: str, tokens: Mapping[str, str]) -> None:
    """Raises GatewayRefused for a non-loopback ``host`` without tokens."""
    from comfyfarm.tasks.binding import is_loopback

    if not tokens and not is_loopback(host):
        raise GatewayRefused(host=host)
