"""Validate every JSON response the SDK receives against the Comfy API v2 spec (openapi-core).

``watch(client)`` adds an httpx response hook to a ``comfy_sdk.Comfy`` client's transport; each
JSON response to a path the spec describes is validated (status, headers, body schema) and
``SpecWatch.errors`` collects what failed. Streams (SSE, content) are left unread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

SPEC_PATH = Path(__file__).resolve().parents[2] / "gateway" / "openapi.yaml"
NOT_IN_SPEC = ("/api/v2/health",)


def load_spec() -> OpenAPI:
    data = yaml.safe_load(SPEC_PATH.read_text())
    data["servers"] = [{"url": "/"}]  # the test gateway listens on a random port
    return OpenAPI.from_dict(_nullable_refs(data, data["components"]["schemas"]))


def _nullable_refs(node: Any, schemas: dict[str, Any]) -> Any:
    """``{allOf: [{$ref: X}], nullable: true}`` → a copy of X with ``nullable: true``.

    The spec means "X or null" (its descriptions say so: ``progress`` is null while queued), but
    OAS 3.0's ``nullable`` does not reach into ``allOf`` members, so openapi-core would refuse
    every null there. The copy says exactly what the spec means.
    """
    if isinstance(node, list):
        return [_nullable_refs(item, schemas) for item in node]
    if not isinstance(node, dict):
        return node
    all_of = node.get("allOf")
    if (
        node.get("nullable")
        and isinstance(all_of, list)
        and len(all_of) == 1
        and "$ref" in all_of[0]
    ):
        target = dict(schemas[all_of[0]["$ref"].rsplit("/", 1)[-1]])
        rest = {k: v for k, v in node.items() if k not in ("allOf", "nullable")}
        return _nullable_refs({**target, **rest, "nullable": True}, schemas)
    return {key: _nullable_refs(value, schemas) for key, value in node.items()}


@dataclass
class _Request:
    host_url: str
    path: str
    method: str
    parameters: RequestParameters
    body: bytes | None
    content_type: str


@dataclass
class _Response:
    status_code: int
    content_type: str
    headers: Headers
    data: bytes | None


@dataclass
class SpecWatch:
    api: OpenAPI = field(default_factory=load_spec)
    errors: list[str] = field(default_factory=list)
    checked: int = 0

    def check(self, response: httpx.Response) -> None:
        request = response.request
        path = request.url.path
        content_type = response.headers.get("content-type", "")
        if path in NOT_IN_SPEC or (path == "/api/v2/jobs" and request.method == "GET"):
            return  # the job list is newer than this spec copy (see test_gateway_jobs)
        if not content_type.startswith("application/json") and request.method != "HEAD":
            return
        response.read()
        req = _Request(
            host_url=f"{request.url.scheme}://{request.url.netloc.decode()}",
            path=path,
            method=request.method.lower(),
            parameters=RequestParameters(
                query=ImmutableMultiDict(list(request.url.params.multi_items())),
                header=Headers(dict(request.headers)),
            ),
            body=None,
            content_type=request.headers.get("content-type", ""),
        )
        resp = _Response(
            response.status_code,
            content_type.split(";")[0],
            Headers(dict(response.headers)),
            response.content if response.content else None,
        )
        self.checked += 1
        try:
            self.api.validate_response(req, resp)  # type: ignore[arg-type]
        except Exception as exc:  # collected, asserted by the test
            self.errors.append(
                f"{request.method} {path} -> {response.status_code}: {exc!r}: "
                f"{getattr(exc, '__cause__', None)!r} {response.content[:300]!r}"
            )

    def watch(self, client: Any) -> Any:
        """Hook into ``client`` (a comfy_sdk.Comfy); returns it."""
        client._low._client.event_hooks["response"].append(self.check)
        return client
