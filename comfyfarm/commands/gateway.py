"""``comfyfarm gateway``: serve Comfy API v2 in front of the farm (any comfy-sdk program).

Prints ``comfyfarm gateway listening on http://HOST:PORT`` once it accepts connections (the
demo and the tests wait for that line). Without ``COMFYFARM_API_TOKENS`` only loopback may be
bound.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from comfyfarm.gateway.settings import GatewaySettings

READY_LINE = "comfyfarm gateway listening on http://{host}:{port}"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help="address to bind (COMFYFARM_GATEWAY_HOST; "
                        "default 127.0.0.1; anything else needs COMFYFARM_API_TOKENS)")  # fmt: skip
    parser.add_argument(
        "--port", type=int, default=None, help="port (COMFYFARM_GATEWAY_PORT; default 8189)"
    )


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from comfyfarm.gateway.auth import GatewayRefused, check_bind
    from comfyfarm.gateway.settings import GatewaySettings
    from comfyfarm.tasks.errors import SettingsError

    try:
        settings = GatewaySettings.from_env()
        if args.host is not None:
            settings = replace(settings, host=args.host)
        if args.port is not None:
            settings = replace(settings, port=args.port)
        check_bind(settings.host, settings.tokens)
    except (SettingsError, GatewayRefused) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(serve(settings))
    return 0


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when installed (the gateway extra has it: a cheaper loop for a
    service that is mostly small requests and idle streams); otherwise asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def serve(settings: GatewaySettings) -> None:
    from aiohttp import web

    from comfyfarm.gateway.app import make_app

    runner = web.AppRunner(make_app(settings), handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(
        runner, settings.host, settings.port, backlog=1024, shutdown_timeout=5.0
    ).start()
    bound = runner.addresses[0][1]
    print(READY_LINE.format(host=settings.host, port=bound), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await runner.cleanup()
