"""Creating assets: ``POST /api/v2/assets`` (multipart, streamed), ``POST …/from-hash`` and
``HEAD …/by-hash/{hash}``.

An upload is read part by part and chunk by chunk straight into a ``BlobWriter`` (BLAKE3 while
spooling; never whole in memory; refused past ``COMFYFARM_MAX_UPLOAD_BYTES``). The blob is
deduplicated per tenant: ``201`` for new bytes, ``200`` for bytes the tenant already had, and a
new asset record either way. ``expected_hash`` is verified, never trusted (409
``hash_mismatch``). ``from-hash`` and ``by-hash`` only see the caller's own blobs, so "absent"
and "another tenant's" cannot be told apart (404 ``blob_not_found``).

The asset's ``file_path`` is also indexed (``<prefix>gw:asset-name:<tenant>:<sha256>`` → id), so
a workflow may name an uploaded file the way ComfyUI users do — ``"image": "photo.png"`` — and
the gateway resolves it (``asset_refs``).
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from comfyfarm.gateway import idempotency
from comfyfarm.gateway.assets import render_asset, upload_view
from comfyfarm.gateway.context import GATEWAY, Gateway, origin_of
from comfyfarm.gateway.errors import ApiError, invalid_request
from comfyfarm.gateway.jobs import read_json
from comfyfarm.storage.asset_records import AssetRecord, RecordError, new_asset_id
from comfyfarm.storage.blobs import Blob, BlobTooLarge, HashMismatch, InvalidDigest
from comfyfarm.storage.digests import is_blake3

CHUNK = 1024 * 1024
MAX_FIELD_BYTES = 4096
MAX_TAGS = 32


def routes() -> list[web.RouteDef]:
    return [
        web.post("/api/v2/assets", post_asset),
        web.post("/api/v2/assets/from-hash", asset_from_hash),
        web.head("/api/v2/assets/by-hash/{hash}", head_by_hash),
    ]


def name_key(prefix: str, tenant: str, file_path: str) -> str:
    digest = hashlib.sha256(file_path.encode()).hexdigest()
    return f"{prefix}gw:asset-name:{tenant}:{digest}"


async def post_asset(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    tenant = request["tenant"]
    if not request.content_type.startswith("multipart/"):
        raise invalid_request("send multipart/form-data with file, content_type and file_path")
    key = request.headers.get("Idempotency-Key")
    claim = None
    if key is not None:
        claim = await idempotency.claim(gw.client, gw.prefix, f"{tenant}:assets", key)
    asset_id = new_asset_id()
    held: list[str] = []  # the digest the new asset holds (``blob_refs``), once it does
    try:
        fields, blob, created = await _receive(request, gw, tenant, asset_id, held)
        record = await _mint(gw, tenant, blob, fields, asset_id)
    except BaseException as exc:
        for digest in held:  # no asset was created: it holds nothing
            await gw.refs.release(tenant, digest, f"asset:{asset_id}")
        if isinstance(exc, ApiError) and claim is not None and exc.status < 500:
            await claim.release()
        raise
    body = render_asset(upload_view(gw, record), origin_of(request), created_new=created,
                        links=gw.links)  # fmt: skip
    return web.json_response(body, status=201 if created else 200)


async def _receive(
    request: web.Request, gw: Gateway, tenant: str, asset_id: str, held: list[str]
) -> tuple[dict[str, Any], Blob, bool]:
    """The form fields and the committed blob (and whether it is new), held by ``asset_id``
    from before the blob is looked for (its digest appended to ``held``)."""
    reader = await request.multipart()
    fields: dict[str, Any] = {"tags": []}
    writer = None
    try:
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise invalid_request("nested multipart bodies are not accepted")
            name = part.name or ""
            if name == "file":
                if writer is not None:
                    raise invalid_request("send exactly one 'file' part", field="file")
                writer = await asyncio.to_thread(gw.blobs.begin, tenant)
                while chunk := await part.read_chunk(CHUNK):
                    await asyncio.to_thread(writer.write, chunk)
                continue
            value = (await part.read(decode=True))[: MAX_FIELD_BYTES + 1]
            if len(value) > MAX_FIELD_BYTES:
                raise invalid_request(f"field {name[:40]!r} is too long", field=name[:40])
            text = value.decode("utf-8", "replace")
            if name == "tags":
                fields["tags"].append(text)
            else:
                fields[name] = text
        missing = [n for n in ("content_type", "file_path") if not fields.get(n)]
        if writer is None:
            missing.insert(0, "file")
        if missing or writer is None:
            raise invalid_request(f"missing multipart fields: {', '.join(missing)}",
                                  fields=missing)  # fmt: skip
        expected = fields.get("expected_hash") or None
        digest = writer.digest
        counted = await gw.refs.hold(tenant, digest, f"asset:{asset_id}")
        held.append(digest)
        blob, created = await asyncio.to_thread(writer.commit, expected)
        if not created and not counted:  # bytes from before holders were counted
            await gw.refs.mark_legacy(tenant, digest)
        return fields, blob, created
    except BlobTooLarge as exc:
        raise ApiError(413, "payload_too_large", exc.reason) from None
    except (HttpProcessingError, ValueError) as exc:  # a malformed multipart body
        raise invalid_request(f"malformed multipart body: {str(exc)[:200]}") from None
    except InvalidDigest as exc:
        raise invalid_request(exc.reason, field="expected_hash") from None
    except HashMismatch as exc:
        raise ApiError(409, "hash_mismatch", exc.reason, details={"expected": exc.expected,
                       "actual": exc.actual}) from None  # fmt: skip
    finally:
        if writer is not None and not writer.closed:
            writer.abort()


async def _mint(
    gw: Gateway, tenant: str, blob: Blob, fields: dict[str, Any], asset_id: str
) -> AssetRecord:
    tags = [str(tag)[:128] for tag in fields.get("tags") or []][:MAX_TAGS]
    file_path = str(fields.get("file_path") or "")
    try:
        record = await asyncio.to_thread(
            gw.blobs.create_asset,
            tenant,
            blob,
            name=file_path,
            mime_type=str(fields.get("content_type") or "application/octet-stream"),
            metadata={"tags": tags} if tags else None,
            asset_id=asset_id,
        )
    except RecordError as exc:
        raise invalid_request(str(exc)) from None
    if file_path:
        await gw.client.set(name_key(gw.prefix, tenant, file_path), record.id)
    return record


async def asset_from_hash(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    tenant = request["tenant"]
    body = await read_json(request, max_bytes=64 * 1024)
    if not isinstance(body, dict) or not isinstance(body.get("hash"), str):
        raise invalid_request("'hash' (blake3:<hex>) is required", field="hash")
    asset_id = new_asset_id()
    holder = f"asset:{asset_id}"
    digest = body["hash"]
    counted = is_blake3(digest) and await gw.refs.hold(tenant, digest, holder)
    try:
        record = await _from_hash(gw, tenant, digest, body, asset_id)
    except BaseException:
        if is_blake3(digest):
            await gw.refs.release(tenant, digest, holder)
        raise
    if not counted:
        await gw.refs.mark_legacy(tenant, digest)  # bytes from before holders were counted
    body = render_asset(upload_view(gw, record), origin_of(request), created_new=False,
                        links=gw.links)  # fmt: skip
    return web.json_response(body, status=201)


async def _from_hash(
    gw: Gateway, tenant: str, digest: str, body: dict[str, Any], asset_id: str
) -> AssetRecord:
    blob = await asyncio.to_thread(gw.blobs.find, tenant, digest)
    if blob is None:
        raise ApiError(404, "blob_not_found", "no blob with this hash that the caller may use")
    file_path = body.get("file_path")
    tags = body.get("tags")
    if file_path is not None and not isinstance(file_path, str):
        raise invalid_request("'file_path' must be a string", field="file_path")
    if tags is not None and not (isinstance(tags, list) and all(isinstance(t, str) for t in tags)):
        raise invalid_request("'tags' must be a list of strings", field="tags")
    guessed = _guess_type(file_path or "")
    return await _mint(gw, tenant, blob, {"file_path": file_path or "", "tags": tags or [],
                                          "content_type": guessed}, asset_id)  # fmt: skip


async def head_by_hash(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    blob = await asyncio.to_thread(gw.blobs.find, request["tenant"], request.match_info["hash"])
    return web.Response(status=200 if blob is not None else 404)


def _guess_type(name: str) -> str:
    import mimetypes

    return mimetypes.guess_type(name)[0] or "application/octet-stream"
