"""Serving stored bytes over HTTP, with ``Range`` (206, 416), from any of the farm's stores.

A ``file://`` object is served by aiohttp's FileResponse (sendfile, ranges handled there); other
stores (``s3://``, ``memory://``) are streamed in chunks read in a thread, never whole in
memory. Only objects inside the farm's own store are served: a URI elsewhere is "not found".
"""

from __future__ import annotations

import asyncio
import re
from typing import BinaryIO
from urllib.parse import unquote

from aiohttp import web

from comfyfarm.gateway.errors import ApiError, not_found
from comfyfarm.storage import LocalStore, ObjectNotFound, OutputStore, StorageError, UnsafeKey

CHUNK = 1024 * 1024
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def key_of(store: OutputStore, uri: str) -> str | None:
    """The key of ``uri`` inside ``store``, or None when it is not one of its objects."""
    root = store.uri("x")[:-1]
    if not uri.startswith(root):
        return None
    return unquote(uri[len(root) :]) if store.uri("x").startswith("file:") else uri[len(root) :]


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) inclusive of a single ``bytes=`` range; None for no (or an ignored) range;
    ApiError 416 when it cannot be satisfied."""
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None  # not a form we serve ranged: the whole content (RFC 9110 allows this)
    first_text, last_text = match.groups()
    if not first_text and not last_text:
        return None
    if not first_text:
        length = int(last_text)
        if length == 0:
            raise _unsatisfiable(size)
        return max(0, size - length), size - 1
    first = int(first_text)
    last = min(int(last_text), size - 1) if last_text else size - 1
    if first >= size or last < first:
        raise _unsatisfiable(size)
    return first, last


def _unsatisfiable(size: int) -> ApiError:
    return ApiError(416, "range_not_satisfiable", "the requested range is outside the content",
                    headers={"Content-Range": f"bytes */{size}"})  # fmt: skip


async def serve_stored(
    request: web.Request, store: OutputStore, uri: str, *, size: int, content_type: str
) -> web.StreamResponse:
    key = key_of(store, uri)
    if key is None:
        raise not_found("content")
    headers = {"Content-Type": content_type, "Accept-Ranges": "bytes"}
    if isinstance(store, LocalStore):
        try:
            path = store.path(key)
        except (UnsafeKey, StorageError):
            raise not_found("content") from None
        if not path.is_file():
            raise not_found("content")
        return web.FileResponse(path, headers=headers)
    span = parse_range(request.headers.get("Range"), size)
    try:
        handle = await asyncio.to_thread(store.open_read, key)
    except ObjectNotFound:
        raise not_found("content") from None
    try:
        first, last = span if span is not None else (0, size - 1)
        response = web.StreamResponse(status=206 if span is not None else 200, headers=headers)
        response.content_length = max(0, last - first + 1)
        if span is not None:
            response.headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        await response.prepare(request)
        await _copy(handle, response, first, last - first + 1)
        await response.write_eof()
        return response
    finally:
        handle.close()


async def serve_text(request: web.Request, text: str, content_type: str) -> web.Response:
    data = text.encode()
    span = parse_range(request.headers.get("Range"), len(data))
    if span is None:
        return web.Response(body=data, content_type=content_type.split(";")[0], charset="utf-8")
    first, last = span
    return web.Response(
        status=206,
        body=data[first : last + 1],
        headers={
            "Content-Range": f"bytes {first}-{last}/{len(data)}",
            "Content-Type": content_type,
        },  # fmt: skip
    )


async def _copy(handle: BinaryIO, response: web.StreamResponse, first: int, length: int) -> None:
    if first:
        if handle.seekable():
            await asyncio.to_thread(handle.seek, first)
        else:
            left = first
            while left > 0:
                skipped = await asyncio.to_thread(handle.read, min(CHUNK, left))
                if not skipped:
                    return
                left -= len(skipped)
    left = length
    while left > 0:
        chunk = await asyncio.to_thread(handle.read, min(CHUNK, left))
        if not chunk:
            break
        left -= len(chunk)
        await response.write(chunk)
