"""Routes of the assets resource.

``GET /api/v2/assets/{id}`` (the record, with a content URL) and ``GET …/{id}/content`` (the
bytes, with ``Range``) serve every asset of the caller: job outputs today (each output is an
asset, see ``asset_records``). The content URL is the gateway's own: it needs the caller's
token, and stays valid as long as the asset (``url_expires_at`` = the asset's ``expires_at``, or
a day for assets that do not expire).
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from comfyfarm.gateway.asset_records import AssetRecord, load_asset
from comfyfarm.gateway.content import serve_stored, serve_text
from comfyfarm.gateway.context import GATEWAY, origin_of
from comfyfarm.gateway.errors import not_found
from comfyfarm.gateway.job_view import API, iso
from comfyfarm.gateway.jobs import is_uuid

URL_SECONDS = 24 * 3600


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/v2/assets/{id}", get_asset),
        web.get("/api/v2/assets/{id}/content", get_content),
    ]


def render_asset(
    record: AssetRecord, origin: str, *, created_new: bool | None = None
) -> dict[str, Any]:
    url_expires = record.expires_at or time.time() + URL_SECONDS
    body: dict[str, Any] = {
        "id": record.asset_id,
        "hash": record.hash,
        "size_bytes": record.size_bytes,
        "content_type": record.content_type,
        "file_path": record.file_path,
        "created_at": iso(record.created_at),
        "url": f"{origin}{API}/assets/{record.asset_id}/content",
        "url_expires_at": iso(url_expires),
        "expires_at": iso(record.expires_at),
        "job_id": record.job_id,
    }
    if created_new is not None:
        body["created_new"] = created_new
    return body


async def owned_asset(request: web.Request) -> AssetRecord:
    gw = request.app[GATEWAY]
    asset_id = request.match_info["id"]
    if not is_uuid(asset_id):
        raise not_found("asset")
    record = await load_asset(gw.client, gw.prefix, asset_id, request["tenant"])
    if record is None:
        raise not_found("asset")
    return record


async def get_asset(request: web.Request) -> web.Response:
    record = await owned_asset(request)
    return web.json_response(render_asset(record, origin_of(request)))


async def get_content(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    record = await owned_asset(request)
    if record.uri is None:
        return await serve_text(request, record.text or "", record.content_type)
    return await serve_stored(
        request, gw.store, record.uri, size=record.size_bytes, content_type=record.content_type
    )
