"""The aiohttp application: ComfyUI routes (also under /api), the jobs API, /_sim control routes,
and the background tasks (the prompt worker loop, the WebSocket publisher) of one Simulator.

Imports point one way: app → routes_* → instance (the Simulator they serve).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from comfyfarm.simulator.instance import Simulator
from comfyfarm.simulator.routes_comfy import comfy_routes
from comfyfarm.simulator.routes_files import file_routes
from comfyfarm.simulator.routes_sim import garbage_middleware, jobs_routes, sim_routes


def build_app(sim: Simulator) -> web.Application:
    """The aiohttp application: ComfyUI routes (also under /api), jobs API, /_sim control routes."""
    app = web.Application(client_max_size=104857600, middlewares=[garbage_middleware(sim)])
    comfy = [*comfy_routes(sim), *file_routes(sim)]
    api = web.RouteTableDef()
    for route in comfy:
        if isinstance(route, web.RouteDef):
            api.route(route.method, "/api" + route.path)(route.handler)
    app.add_routes(api)
    app.add_routes(comfy)
    if sim.config.jobs_api:
        app.add_routes(jobs_routes(sim))
    app.add_routes(sim_routes(sim))

    async def start_background(app: web.Application) -> Any:
        tasks = [
            asyncio.create_task(sim.run_worker()),
            asyncio.create_task(sim.hub.publish_forever()),
        ]
        yield
        for task in tasks:
            task.cancel()

    app.cleanup_ctx.append(start_background)
    return app
