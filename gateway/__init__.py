"""The Comfy API v2 gateway: the official Comfy SDK (any ``comfy-sdk`` program) runs on the farm.

Northbound it serves the Comfy API v2 contract (``/api/v2/...``, the shapes in ``openapi.yaml``
beside this file); southbound it is an ordinary producer (``comfyfarm.producer``) plus a few
small Redis records of its own. It keeps no state in the process beyond caches and the
one pub/sub connection that feeds every event stream, so several gateways can run behind a load
balancer.

``make_app(settings)`` builds the aiohttp application; ``comfyfarm gateway`` serves it. Both are
imported on first use, so the supervisor of ``--processes N`` (which reads only the settings)
does not carry the application's modules in its memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from comfyfarm.gateway.app import make_app
    from comfyfarm.gateway.settings import GatewaySettings

__all__ = ["GatewaySettings", "make_app"]


def __getattr__(name: str) -> Any:
    if name == "make_app":
        from comfyfarm.gateway.app import make_app

        return make_app
    if name == "GatewaySettings":
        from comfyfarm.gateway.settings import GatewaySettings

        return GatewaySettings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
