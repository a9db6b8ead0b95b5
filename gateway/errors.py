"""ApiError and the middleware that renders every failure as the contract's ErrorEnvelope.

```
ApiError(status, code, message, details, headers)   an answer the caller can act on (4xx), or the
                                                     one generic 500 ``upstream_error``
```

Every error response has the body ``{"error": {"code", "message", "details"}}``. A route that
does not exist is ``404 not_found``; a method a route does not serve is ``405
method_not_allowed``; any other exception is logged with its traceback here and answered
``500 upstream_error`` with a generic message: no traceback, no backend detail reaches a client.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from comfyfarm.gateway import jsonio

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """Raised by a route to answer with an ErrorEnvelope (``status``, machine ``code``)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.details = dict(details) if details is not None else None
        self.headers = dict(headers or {})
        super().__init__(f"{status} {code}: {message}")

    def response(self) -> web.Response:
        return error_response(self.status, self.code, self.message, self.details, self.headers)


def error_response(
    status: int,
    code: str,
    message: str,
    details: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    body = {"error": {"code": code, "message": message, "details": details}}
    return jsonio.json_response(body, status=status, headers=dict(headers or {}))


def not_found(what: str = "resource") -> ApiError:
    """The one 404 for unknown, expired and other tenants' objects alike (no existence leak)."""
    return ApiError(404, "not_found", f"{what} not found")


def invalid_request(message: str, **details: Any) -> ApiError:
    return ApiError(422, "invalid_request", message, details=details or None)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except web.HTTPException as exc:
        if exc.status == 404:
            return error_response(404, "not_found", f"no route {request.method} {request.path}")
        if exc.status == 405:
            return error_response(
                405, "method_not_allowed", f"{request.method} is not served on {request.path}"
            )
        if exc.status == 413:
            return error_response(413, "payload_too_large", "the request body is too large")
        if exc.status < 400:
            raise
        return error_response(exc.status, "bad_request", exc.reason or "bad request")
    except Exception:
        log.exception("unexpected error serving %s %s", request.method, request.path)
        return error_response(
            500, "upstream_error", "the gateway could not complete the request; try again later"
        )
