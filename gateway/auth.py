"""Bearer tokens → tenants, and the bind rule for a gateway without them.

``COMFYFARM_API_TOKENS="tenant:token,…"``: each token names one tenant; jobs and assets belong to
their tenant, and another tenant's objects answer 404 exactly like unknown ones. Tokens are
compared in constant time against every configured token (``hmac.compare_digest``), so the time
an answer takes says nothing about how much of a token matched, nor which.

Without tokens every caller is the tenant ``default`` and the gateway refuses to bind anything but
loopback (``GatewayRefused``) — as ``comfyfarm flower`` does without basic auth.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from comfyfarm.gateway.binding import GatewayRefused, check_bind
from comfyfarm.gateway.errors import ApiError, Handler

__all__ = ["GatewayRefused", "auth_middleware", "check_bind", "tenant_for"]

DEFAULT_TENANT = "default"
OPEN_PATHS = frozenset({"/api/v2/health"})


def tenant_for(header: str | None, tokens: Mapping[str, str]) -> str:
    """The tenant of an ``Authorization`` header; ApiError 401 when it names none."""
    if not tokens:
        return DEFAULT_TENANT
    scheme, _, presented = (header or "").partition(" ")
    presented = presented.strip()
    if scheme.lower() != "bearer" or not presented:
        raise unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    found: str | None = None
    given = presented.encode()
    for token, tenant in tokens.items():  # every token is compared: no early exit
        if hmac.compare_digest(given, token.encode()):
            found = tenant
    if found is None:
        raise unauthorized("invalid bearer token")
    return found


def unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def auth_middleware(tokens: Mapping[str, str], open_paths: frozenset[str] = OPEN_PATHS) -> Any:
    """Sets ``request["tenant"]``; health is open (a load balancer probes it without a token),
    and so is any other path in ``open_paths`` (``/metrics`` when it checks its own token)."""

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in open_paths:
            request["tenant"] = tenant_for(request.headers.get("Authorization"), tokens)
        return await handler(request)

    return authenticate
