"""Routes of the jobs resource: submit, get, list, workflow, cancel.

Every route is tenant-scoped: a job of another tenant answers exactly like an unknown one (404).
Reads go to Redis with redis.asyncio; the producer's sync calls (publish, cancel) run in a thread.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import uuid
from typing import Any

from aiohttp import web

from comfyfarm.gateway import idempotency, jsonio
from comfyfarm.gateway.context import GATEWAY, Gateway
from comfyfarm.gateway.errors import ApiError, invalid_request, not_found
from comfyfarm.gateway.job_records import JobRecord, load_record, page_ids, parse_record, record_key
from comfyfarm.gateway.job_state import FarmView, read_views, view_of
from comfyfarm.gateway.job_view import is_expired, render_job, render_summary
from comfyfarm.gateway.submission import MAX_BODY_BYTES, parse_submission
from comfyfarm.tasks.models import new_job_id

DEFAULT_PAGE = 50
MAX_PAGE = 100
SCAN_FACTOR = 10  # a filtered page reads at most this many pages' worth of jobs


def routes() -> list[web.RouteDef]:
    return [
        web.post("/api/v2/jobs", post_job),
        web.get("/api/v2/jobs", list_jobs),
        web.get("/api/v2/jobs/{id}", get_job),
        web.get("/api/v2/jobs/{id}/workflow", get_workflow),
        web.post("/api/v2/jobs/{id}/cancel", cancel_job),
    ]


async def read_json(request: web.Request, max_bytes: int = MAX_BODY_BYTES) -> Any:
    if request.content_length is not None and request.content_length > max_bytes:
        raise ApiError(413, "payload_too_large", f"the body is larger than {max_bytes} bytes")
    raw = await request.content.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise ApiError(413, "payload_too_large", f"the body is larger than {max_bytes} bytes")
    try:
        return jsonio.loads(raw)  # strict: no NaN, no lone surrogates
    except (ValueError, UnicodeDecodeError):
        raise invalid_request("the body is not valid JSON") from None


async def post_job(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    tenant = request["tenant"]
    submission = parse_submission(await read_json(request))
    key = request.headers.get("Idempotency-Key")
    claim = None
    if key is not None:
        claim = await idempotency.claim(gw.client, gw.prefix, tenant, key)
    job_id = new_job_id()
    blobs: list[str] = []
    try:
        prompt, params = await gw.submitter.prepare(submission)
        prompt, inputs, blobs = await gw.resolve_assets(tenant, prompt)
        await gw.hold_inputs(tenant, job_id, blobs)
        record = await gw.submitter.submit(tenant, submission, prompt, job_id=job_id,
                                           params=params, inputs=inputs, blobs=blobs)  # fmt: skip
    except ApiError as exc:
        if exc.status < 500:  # definitive: no job was created
            await gw.release_inputs(tenant, job_id, blobs)
            if claim is not None:
                await claim.release()  # the key may be used again
        raise
    # Just enqueued: queued by definition (no round trip to read it back).
    view = view_of(record.job_id, None, b"{}", False, None, gw.prefix)
    body = await gw.render(request, record, view, position=False)  # the hot path stays short
    return jsonio.json_response(body, status=201)


async def get_job(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    record, view = await owned_job(request)
    return jsonio.json_response(await gw.render(request, record, view))


async def get_workflow(request: web.Request) -> web.Response:
    record, _ = await owned_job(request, with_state=False)
    return jsonio.json_response({"workflow": record.workflow, "format": "api"})


async def cancel_job(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    record, view = await owned_job(request)
    # Idempotent: a finished (or expired) job is left as it is.
    if view.result is None and not is_expired(record, gw.retention):
        await asyncio.to_thread(gw.farm.cancel, record.job_id, reason="canceled via API v2")
        [view] = await read_views(gw.client, gw.results, gw.prefix, [record.job_id])
    return jsonio.json_response(await gw.render(request, record, view))


async def owned_job(request: web.Request, *, with_state: bool = True) -> tuple[JobRecord, FarmView]:
    """The caller's job named in the path, and its farm state; 404 otherwise."""
    gw: Gateway = request.app[GATEWAY]
    job_id = request.match_info["id"]
    if not is_uuid(job_id):
        raise not_found("job")
    record = await load_record(gw.client, gw.prefix, job_id, request["tenant"])
    if record is None:
        raise not_found("job")
    if not with_state:
        return record, None  # type: ignore[return-value]
    [view] = await read_views(gw.client, gw.results, gw.prefix, [job_id])
    return record, view


async def list_jobs(request: web.Request) -> web.Response:
    """Newest first; ``metadata[key]=value`` filters; ``next_cursor`` is absent on the last page."""
    gw = request.app[GATEWAY]
    tenant = request["tenant"]
    limit = _limit(request.query.get("limit"))
    before = decode_cursor(request.query.get("cursor"))
    wanted = {
        name[len("metadata[") : -1]: value
        for name, value in request.query.items()
        if name.startswith("metadata[") and name.endswith("]")
    }
    items: list[dict[str, Any]] = []
    budget = limit * SCAN_FACTOR
    exhausted = False
    while len(items) < limit and budget > 0:
        batch = await page_ids(gw.client, gw.prefix, tenant, before=before,
                               count=min(limit, budget))  # fmt: skip
        if not batch:
            exhausted = True
            break
        budget -= len(batch)
        before = (batch[-1][1], batch[-1][0])
        ids = [job_id for job_id, _ in batch]
        raws = await gw.client.mget([record_key(gw.prefix, job_id) for job_id in ids])
        records = [parse_record(job_id, raw) for job_id, raw in zip(ids, raws, strict=True)]
        kept = [r for r in records if r is not None and r.tenant == tenant
                and all(r.metadata.get(k) == v for k, v in wanted.items())]  # fmt: skip
        views = await read_views(gw.client, gw.results, gw.prefix, [r.job_id for r in kept])
        items.extend(render_summary(r, v, retention=gw.retention)
                     for r, v in zip(kept, views, strict=True))  # fmt: skip
        if len(batch) < min(limit, budget + len(batch)):
            exhausted = True
            break
    body: dict[str, Any] = {"jobs": items[:limit]}
    if not exhausted and before is not None:
        body["next_cursor"] = encode_cursor(before)
    return jsonio.json_response(body)


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_PAGE
    try:
        value = int(raw)
    except ValueError:
        raise invalid_request("'limit' must be a whole number 1-100", field="limit") from None
    if not 1 <= value <= MAX_PAGE:
        raise invalid_request("'limit' must be a whole number 1-100", field="limit")
    return value


def encode_cursor(position: tuple[float, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(position)).encode()).decode().rstrip("=")


def decode_cursor(raw: str | None) -> tuple[float, str] | None:
    if raw is None or raw == "":
        return None
    try:
        padded = raw + "=" * (-len(raw) % 4)
        score, job_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not is_uuid(job_id):
            raise ValueError(job_id)
        return float(score), str(job_id)
    except (ValueError, TypeError, binascii.Error):
        raise ApiError(422, "invalid_cursor", "'cursor' was not issued by this server") from None


def is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except (ValueError, TypeError, AttributeError):
        return False


__all__ = ["render_job", "routes"]
