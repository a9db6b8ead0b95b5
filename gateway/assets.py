"""Routes of the assets resource: read (``GET``), content (``GET …/content``, with ``Range``) and
``DELETE``; uploads are in ``asset_upload``.

Two kinds of asset answer here, both per tenant: uploaded ones (records over content-addressed
blobs, ``comfyfarm.storage.blobs``) and job outputs (``output_assets``). The content URL is a
presigned one where the store signs (``content_links``; then ``GET …/content`` redirects to a
fresh one), else the gateway's own: it needs the caller's token and stays valid as long as the
asset (``url_expires_at`` = the asset's ``expires_at``, or a day for assets that do not expire).
Deleting an output is ``409 asset_in_use`` (its job still lists it); deleting an upload removes
its record, and its blob once no other asset and no unfinished job holds it (``blob_refs``).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from comfyfarm.gateway.content import serve_stored, serve_text
from comfyfarm.gateway.content_links import ContentLinks
from comfyfarm.gateway.context import GATEWAY, Gateway, origin_of
from comfyfarm.gateway.errors import ApiError, not_found
from comfyfarm.gateway.job_view import API, iso
from comfyfarm.gateway.jobs import is_uuid
from comfyfarm.gateway.output_assets import load_output_asset
from comfyfarm.storage.asset_records import AssetRecord

URL_SECONDS = 24 * 3600


@dataclass(frozen=True)
class AssetView:
    """What the routes need of either kind of asset."""

    asset_id: str
    hash: str | None
    size_bytes: int
    content_type: str
    file_path: str | None
    created_at: float
    expires_at: float | None
    job_id: str | None
    uri: str | None
    text: str | None = None
    upload: AssetRecord | None = None  # set for uploaded assets


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/v2/assets/{id}", get_asset),
        web.delete("/api/v2/assets/{id}", delete_asset),
        web.get("/api/v2/assets/{id}/content", get_content),
    ]


def upload_view(gw: Gateway, record: AssetRecord) -> AssetView:
    blob = gw.blobs.blob_of(record)
    return AssetView(
        asset_id=record.id,
        hash=record.digest if record.digest.startswith("blake3:") else None,
        size_bytes=record.size,
        content_type=record.mime_type,
        file_path=record.name or None,
        created_at=record.created_at,
        expires_at=None,
        job_id=None,
        uri=gw.blobs.uri(blob),
        upload=record,
    )


async def find_asset(gw: Gateway, tenant: str, asset_id: str) -> AssetView | None:
    """The tenant's asset (an output first, then an upload), or None."""
    if not is_uuid(asset_id):
        return None
    output = await load_output_asset(gw.client, gw.prefix, asset_id, tenant)
    if output is not None:
        return AssetView(
            asset_id=output.asset_id,
            hash=output.hash,
            size_bytes=output.size_bytes,
            content_type=output.content_type,
            file_path=output.file_path,
            created_at=output.created_at,
            expires_at=output.expires_at,
            job_id=output.job_id,
            uri=output.uri,
            text=output.text,
        )
    record = await asyncio.to_thread(gw.blobs.get_asset, tenant, asset_id)
    return None if record is None else upload_view(gw, record)


def render_asset(
    asset: AssetView,
    origin: str,
    *,
    created_new: bool | None = None,
    links: ContentLinks | None = None,
) -> dict[str, Any]:
    url_expires = asset.expires_at or time.time() + URL_SECONDS
    url = f"{origin}{API}/assets/{asset.asset_id}/content"
    if links is not None:
        url, url_expires = links.link(asset.asset_id, asset.uri, origin, url_expires)
    body: dict[str, Any] = {
        "id": asset.asset_id,
        "hash": asset.hash,
        "size_bytes": asset.size_bytes,
        "content_type": asset.content_type,
        "file_path": asset.file_path,
        "created_at": iso(asset.created_at),
        "url": url,
        "url_expires_at": iso(url_expires),
        "expires_at": iso(asset.expires_at),
        "job_id": asset.job_id,
    }
    if created_new is not None:
        body["created_new"] = created_new
    return body


async def owned_asset(request: web.Request) -> AssetView:
    asset = await find_asset(request.app[GATEWAY], request["tenant"], request.match_info["id"])
    if asset is None:
        raise not_found("asset")
    return asset


async def get_asset(request: web.Request) -> web.Response:
    asset = await owned_asset(request)
    links = request.app[GATEWAY].links
    return web.json_response(render_asset(asset, origin_of(request), links=links))


async def get_content(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    asset = await owned_asset(request)
    if asset.uri is None:
        return await serve_text(request, asset.text or "", asset.content_type)
    signed = gw.links.presigned(asset.uri)
    if signed is not None:  # the bytes come from S3; a Range header follows the redirect
        return web.Response(status=302, headers={"Location": signed[0]})
    return await serve_stored(
        request, gw.store, asset.uri, size=asset.size_bytes, content_type=asset.content_type
    )


async def delete_asset(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    asset = await owned_asset(request)
    if asset.upload is None:
        raise ApiError(409, "asset_in_use", "this asset cannot be deleted now")
    tenant = request["tenant"]
    if not await asyncio.to_thread(gw.blobs.delete_asset, tenant, asset.asset_id):
        raise not_found("asset")
    # Its blob goes too once no other asset and no unfinished job holds it (``blob_refs``).
    await gw.refs.release(tenant, asset.upload.digest, f"asset:{asset.asset_id}")
    return web.Response(status=204)
