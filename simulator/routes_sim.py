"""Routes that are not ComfyUI 0.3.64: the private /_sim/ control API, the optional 2026 jobs API,
and the middleware behind the ``garbage`` fault.

/_sim/ (never under /api/):
    GET  /_sim/stats          accounting (see simulator.accounting)
    POST /_sim/stats/reset    zero the accounting
    GET  /_sim/faults         {"faults": {name: {params..., nth, times, rate, occurrences, fired}},
                               "random": {"rate", "kinds", "seed", "fired"}}
    POST /_sim/faults         {name: {params and trigger} | true | null, "reset": bool,
                               "seed": int, "random_rate": float, "random_kinds": [...]}
                              -> the GET body; 400 {"error": ...} for unknown names or values
Jobs API (``--jobs-api``, or a ``--comfy-version`` newer than 0.3.64): GET /api/jobs (status,
limit, offset), GET /api/jobs/{id}, POST /api/jobs/{id}/cancel, as the newer server.py.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from comfyfarm.simulator.faults import DEFAULTS
from comfyfarm.simulator.instance import Simulator

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

GARBAGE_HTML = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)


def sim_routes(sim: Simulator) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    @routes.get("/_sim/stats")
    async def get_stats(request: web.Request) -> web.Response:
        return web.json_response(sim.stats())

    @routes.post("/_sim/stats/reset")
    async def reset_stats(request: web.Request) -> web.Response:
        sim.accounting.reset()
        sim.gpu.model_loads = 0
        return web.json_response(sim.stats())

    @routes.get("/_sim/faults")
    async def get_faults(request: web.Request) -> web.Response:
        return web.json_response(sim.faults.snapshot())

    @routes.post("/_sim/faults")
    async def post_faults(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            sim.faults.update(body)
        except (ValueError, TypeError) as ex:  # FaultError and JSONDecodeError are ValueErrors
            return web.json_response({"error": str(ex)}, status=400)
        return web.json_response(sim.faults.snapshot())

    return routes


def jobs_routes(sim: Simulator) -> web.RouteTableDef:
    from comfyfarm.simulator.jobs import JOB_STATUSES, get_job, list_jobs

    routes = web.RouteTableDef()

    @routes.get("/api/jobs")
    async def get_jobs(request: web.Request) -> web.Response:
        query = request.rel_url.query
        statuses = tuple(s.strip().lower() for s in query.get("status", "").split(",") if s)
        invalid = [status for status in statuses if status not in JOB_STATUSES]
        if invalid:
            message = f"Invalid status value(s): {', '.join(invalid)}"
            return web.json_response({"error": message}, status=400)
        try:
            limit = int(query["limit"]) if "limit" in query else None
            offset = max(0, int(query.get("offset", "0")))
        except ValueError:
            return web.json_response({"error": "limit and offset must be integers"}, status=400)
        if limit is not None and limit <= 0:
            return web.json_response({"error": "limit must be a positive integer"}, status=400)
        jobs, total = list_jobs(sim.queue, statuses=statuses, limit=limit, offset=offset)
        pagination = {
            "offset": offset,
            "limit": limit,
            "total": total,
            "has_more": offset + len(jobs) < total,
        }
        return web.json_response({"jobs": jobs, "pagination": pagination})

    @routes.get("/api/jobs/{job_id}")
    async def get_job_by_id(request: web.Request) -> web.Response:
        job = get_job(request.match_info["job_id"], sim.queue)
        if job is None:
            return web.json_response({"error": "Job not found"}, status=404)
        return web.json_response(job)

    @routes.post("/api/jobs/{job_id}/cancel")
    async def cancel_job(request: web.Request) -> web.Response:
        job_id = request.match_info["job_id"]
        if any(item.prompt_id == job_id for item in sim.queue.running_items()):
            sim.interrupt(job_id)
            return web.json_response({"cancelled": True})
        return web.json_response({"cancelled": sim.queue.delete(job_id)})

    return routes


def _matches(path: str, route: str) -> bool:
    for candidate in (route, "/api" + route):
        if path == candidate or path.startswith(candidate.rstrip("/") + "/"):
            return True
    return False


async def _bloated(request: web.Request, real: web.StreamResponse, size: int) -> web.StreamResponse:
    """Fault ``bloat``: a JSON object answer with a padding key of ``size`` bytes, or (for any
    other answer, e.g. /view) ``size`` bytes streamed in 64 KiB writes."""
    body = real.body if isinstance(real, web.Response) else None
    if isinstance(body, bytes) and real.content_type == "application/json":
        data = json.loads(body)
        if isinstance(data, dict):
            data["_sim_padding"] = "x" * size
            return web.json_response(data, status=real.status)
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    await response.prepare(request)
    block = b"\x00" * 65536
    for start in range(0, size, len(block)):
        await response.write(block[: size - start])
    await response.write_eof()
    return response


def garbage_middleware(sim: Simulator) -> Any:
    """Fault ``garbage``: answer a route with HTML, non-JSON bytes, half a body or nothing."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        bloat = sim.faults.peek("bloat")
        if (
            bloat is not None
            and not request.path.startswith("/_sim/")
            and _matches(request.path, str(bloat["route"]))
            and sim.faults.check("bloat") is not None
        ):
            return await _bloated(request, await handler(request), int(bloat["bytes"]))
        armed = sim.faults.peek("garbage")
        route = str((armed or DEFAULTS["garbage"])["route"])
        if request.path.startswith("/_sim/") or not _matches(request.path, route):
            return await handler(request)
        fault = sim.faults.check("garbage")
        if fault is None:
            return await handler(request)
        status, mode = int(fault["status"]), fault["mode"]
        if mode == "html":
            return web.Response(status=status, text=GARBAGE_HTML, content_type="text/html")
        if mode == "empty":
            return web.Response(status=status, body=b"", content_type="application/json")
        if mode == "truncated":
            real = await handler(request)
            body = (
                real.body
                if isinstance(real, web.Response) and isinstance(real.body, bytes)
                else b"{"
            )
            return web.Response(
                status=status, body=body[: max(len(body) // 2, 1)], content_type="application/json"
            )
        return web.Response(
            status=status, body=b"\x00\xffnot json at all{{", content_type="application/json"
        )

    return middleware
