"""make_app(settings): the gateway's aiohttp application.

aiohttp because the farm already runs it (the simulator), and one event loop serves what the
gateway must: thousands of idle SSE streams and streamed multipart uploads without a thread each,
with the producer's few blocking calls moved to threads. Middlewares, outermost first: metrics
(``gateway.metrics``: it wraps the others, so it records the status the client really got), the
error envelope (every failure, 404s included, in the contract's shape), then auth (tenant per
request).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

from aiohttp import web

from comfyfarm.gateway import asset_upload, assets, event_stream, jobs
from comfyfarm.gateway.auth import OPEN_PATHS, auth_middleware
from comfyfarm.gateway.context import GATEWAY, Gateway
from comfyfarm.gateway.errors import error_middleware
from comfyfarm.gateway.metrics import (
    METRICS,
    METRICS_PATH,
    GatewayMetrics,
    metrics_handler,
    metrics_middleware,
)
from comfyfarm.gateway.settings import GatewaySettings
from comfyfarm.gateway.submission import MAX_BODY_BYTES

log = logging.getLogger(__name__)
SWEEP_SECONDS = 60.0
SWEEPER = web.AppKey("blob-sweeper", asyncio.Task[None])
PROCESS_INDEX = web.AppKey("process_index", int)


#: Response header of ``GET /api/v2/health``: which of ``--processes N`` answered (1…N), so an
#: operator (or a test) can tell the processes behind one port apart.
PROCESS_HEADER = "X-Comfyfarm-Process"


async def health(request: web.Request) -> web.Response:
    """Open (no token): the gateway answers, and Redis does."""
    gw = request.app[GATEWAY]
    headers = {PROCESS_HEADER: str(request.app[PROCESS_INDEX])}
    try:
        await gw.client.ping()
    except Exception:  # noqa: BLE001 - any failure means "not healthy", said without detail
        return web.json_response(
            {"status": "unavailable", "redis": False}, status=503, headers=headers
        )
    return web.json_response({"status": "ok", "redis": True}, headers=headers)


async def sweep_blobs(gateway: Gateway) -> None:
    """Every ``SWEEP_SECONDS``: delete the blobs whose last hold (a finished job's) has ended."""
    while True:
        await asyncio.sleep(SWEEP_SECONDS)
        try:
            await gateway.refs.sweep()
        except Exception:  # noqa: BLE001 - logged; the next sweep tries again
            log.exception("blob sweep failed")


def make_app(
    settings: GatewaySettings, *, process_index: int = 1, metrics_dir: str | None = None
) -> web.Application:
    """``metrics_dir``: the ``--processes N`` supervisor's shared metrics directory, whose sum
    ``/metrics`` serves (``gateway.metrics``)."""
    open_streams: Counter[str] = Counter()
    metrics = GatewayMetrics(metrics_dir)
    open_paths = OPEN_PATHS | {METRICS_PATH} if settings.metrics_token else OPEN_PATHS
    app = web.Application(
        middlewares=[
            metrics_middleware(metrics),
            error_middleware,
            auth_middleware(settings.tokens, open_paths),
        ],
        client_max_size=MAX_BODY_BYTES,
    )
    gateway = Gateway(settings)
    app[GATEWAY] = gateway
    app[PROCESS_INDEX] = process_index
    app[METRICS] = metrics
    app.router.add_get("/api/v2/health", health)
    app.router.add_get(METRICS_PATH, metrics_handler(metrics, settings.metrics_token))
    app[event_stream.OPEN_STREAMS] = open_streams
    app.router.add_routes(jobs.routes())
    app.router.add_routes(event_stream.routes())
    app.router.add_routes(asset_upload.routes())
    app.router.add_routes(assets.routes())

    async def start_sweeping(_: web.Application) -> None:
        sweeper = asyncio.create_task(sweep_blobs(gateway), name="gateway-blob-sweep")
        app[SWEEPER] = sweeper

    async def end_streams(_: web.Application) -> None:
        gateway.hub.end_streams()
        app[SWEEPER].cancel()

    async def close(_: web.Application) -> None:
        await gateway.close()

    app.on_startup.append(start_sweeping)
    app.on_shutdown.append(end_streams)
    app.on_cleanup.append(close)
    return app
