"""GET /view and POST /upload/image, with ComfyUI's path checks and duplicate-name rules.

/view: 400 for an absolute filename or one containing ``..``, 403 for a subfolder that leaves
the directory, 404 when the file is missing; files are streamed (FileResponse) with
``Content-Disposition: filename="..."``. Upload: same name and same bytes keep the name,
different bytes get ``name (1).png``; a body without an ``image`` file is a 400 with no body.
"""

from __future__ import annotations

import asyncio
import hashlib
import mimetypes
import os
from typing import Any

from aiohttp import web

from comfyfarm.simulator.instance import Simulator
from comfyfarm.simulator.routes_comfy import server_error

FORCED_DOWNLOAD = {
    "text/html",
    "text/html-sandboxed",
    "application/xhtml+xml",
    "text/javascript",
    "text/css",
}


def file_routes(sim: Simulator) -> web.RouteTableDef:
    routes = web.RouteTableDef()
    roots = sim.roots

    @routes.get("/view")
    async def view_image(request: web.Request) -> web.StreamResponse:
        query = request.rel_url.query
        if "filename" not in query:
            return web.Response(status=404)
        fault = sim.faults.check("view_500")
        if fault is not None:
            return server_error(int(fault["status"]))
        filename, base = roots.annotated_filepath(query["filename"])
        if not filename or filename[0] == "/" or ".." in filename:
            return web.Response(status=400)
        if base is None:
            base = roots.directory_by_type(query.get("type", "output"))
        if base is None:
            return web.Response(status=400)
        output_dir = str(base)
        if "subfolder" in query:
            full = os.path.join(output_dir, query["subfolder"])
            if os.path.commonpath((os.path.abspath(full), output_dir)) != output_dir:
                return web.Response(status=403)
            output_dir = full
        filename = os.path.basename(filename)
        path = os.path.join(output_dir, filename)
        if not os.path.isfile(path):
            return web.Response(status=404)
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        if content_type in FORCED_DOWNLOAD:
            content_type = "application/octet-stream"
        headers = {"Content-Disposition": f'filename="{filename}"', "Content-Type": content_type}
        slow = sim.faults.check("view_slow")
        if slow is not None:
            return await _trickle(request, path, headers, int(slow["bytes_per_second"]))
        return web.FileResponse(path, headers=headers)

    @routes.post("/upload/image")
    async def upload_image(request: web.Request) -> web.Response:
        post = await request.post()
        image: Any = post.get("image")
        overwrite = post.get("overwrite")
        upload_type = post.get("type") or "input"
        upload_dir = roots.directory_by_type(str(upload_type))
        if upload_dir is None:  # ComfyUI fails with UnboundLocalError -> 500
            raise web.HTTPInternalServerError(
                text="500 Internal Server Error\n\nServer got itself in trouble"
            )
        if not (isinstance(image, web.FileField) and image.file):
            return web.Response(status=400)
        filename = image.filename
        if not filename:
            return web.Response(status=400)
        subfolder = str(post.get("subfolder", ""))
        base = str(upload_dir)
        folder = os.path.join(base, os.path.normpath(subfolder))
        path = os.path.abspath(os.path.join(folder, filename))
        if os.path.commonpath((base, path)) != base:
            return web.Response(status=400)
        data = image.file.read()
        name = await asyncio.to_thread(
            _store_upload, folder, filename, path, data, overwrite in ("true", "1")
        )
        return web.json_response({"name": name, "subfolder": subfolder, "type": upload_type})

    return routes


def _store_upload(folder: str, filename: str, path: str, data: bytes, overwrite: bool) -> str:
    """Write the upload; the name it ends up under (the existing one for identical bytes)."""
    os.makedirs(folder, exist_ok=True)
    stem, ext = os.path.splitext(filename)
    counter = 1
    while not overwrite and os.path.exists(path):
        with open(path, "rb") as existing:
            if hashlib.sha256(existing.read()).digest() == hashlib.sha256(data).digest():
                return filename
        filename = f"{stem} ({counter}){ext}"
        path = os.path.join(folder, filename)
        counter += 1
    with open(path, "wb") as out:
        out.write(data)
    return filename


async def _trickle(
    request: web.Request, path: str, headers: dict[str, str], rate: int
) -> web.StreamResponse:
    """Serve a file at ``rate`` bytes per second (fault view_slow)."""
    response = web.StreamResponse(headers=headers)
    response.content_length = os.path.getsize(path)
    await response.prepare(request)
    chunk = max(rate // 10, 1)
    with open(path, "rb") as source:
        while block := source.read(chunk):
            await response.write(block)
            await asyncio.sleep(len(block) / max(rate, 1))
    await response.write_eof()
    return response
