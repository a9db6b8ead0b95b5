"""``comfyfarm gateway``: serve Comfy API v2 in front of the farm (any comfy-sdk program).

Prints ``comfyfarm gateway listening on http://HOST:PORT`` once it accepts connections (the
demo and the tests wait for that line). Without ``COMFYFARM_API_TOKENS`` only loopback may be
bound. ``--processes N`` (``COMFYFARM_GATEWAY_PROCESSES``) runs N gateway processes on the one
port, supervised by this one (``gateway.processes``); the line comes once all of them serve.
The ``--process-index``/``--parent-pid``/``--ready-fd`` options are the supervisor's, for its
children, and hidden.
"""

from __future__ import annotations

import argparse
import asyncio
import os
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
    parser.add_argument("--processes", type=int, default=None, help="gateway processes on the "
                        "port, one core each (COMFYFARM_GATEWAY_PROCESSES; default 1)")  # fmt: skip
    # A child of the supervisor: which one, whose, and where to say "ready".
    parser.add_argument("--process-index", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--ready-fd", type=int, default=None, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from comfyfarm.gateway.binding import GatewayRefused, check_bind
    from comfyfarm.gateway.settings import GatewaySettings
    from comfyfarm.tasks.errors import SettingsError

    try:
        settings = GatewaySettings.from_env()
        if args.host is not None:
            settings = replace(settings, host=args.host)
        if args.port is not None:
            settings = replace(settings, port=args.port)
        if args.processes is not None:
            settings = replace(settings, processes=args.processes)
        check_bind(settings.host, settings.tokens)
    except (SettingsError, GatewayRefused) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.process_index is not None:
        return _run_child(settings, args)
    if settings.processes > 1:
        return _supervise(settings)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(serve(settings))
    return 0


def _supervise(settings: GatewaySettings) -> int:
    import logging

    from comfyfarm.gateway.processes import GatewaySupervisor, SupervisorError

    child_argv = [sys.executable, "-m", "comfyfarm"]
    if logging.getLogger().isEnabledFor(logging.DEBUG):
        child_argv.append("--verbose")
    child_argv += ["gateway", "--host", settings.host, "--processes", "1"]
    supervisor = GatewaySupervisor(settings.host, settings.port, settings.processes, child_argv)
    try:
        port = supervisor.bind()
        supervisor.start()
    except SupervisorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if supervisor.stopping:  # told to stop while its processes were starting
        return 0
    print(READY_LINE.format(host=settings.host, port=port), flush=True)
    supervisor.run()
    return 0


def _run_child(settings: GatewaySettings, args: argparse.Namespace) -> int:
    from comfyfarm.gateway.processes import die_with_parent

    watch_parent = args.parent_pid is not None and not die_with_parent(args.parent_pid)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(serve(settings, process_index=args.process_index, ready_fd=args.ready_fd,
                         parent_pid=args.parent_pid if watch_parent else None))  # fmt: skip
    return 0


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when installed (the gateway extra has it: a cheaper loop for a
    service that is mostly small requests and idle streams); otherwise asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def serve(
    settings: GatewaySettings,
    *,
    process_index: int | None = None,
    ready_fd: int | None = None,
    parent_pid: int | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT. A supervisor's child (``process_index`` given) shares the
    port (SO_REUSEPORT), says "ready" on ``ready_fd`` instead of printing the ready line, and
    with ``parent_pid`` stops when that process is gone."""
    from aiohttp import web

    from comfyfarm.gateway.app import make_app
    from comfyfarm.gateway.processes import tell_ready
    from comfyfarm.tasks.multiprocess_metrics import MULTIPROC_ENV

    # A supervisor's child sums its metrics with its siblings' (the supervisor set the directory).
    metrics_dir = os.environ.get(MULTIPROC_ENV) if process_index is not None else None
    app = make_app(settings, process_index=process_index or 1, metrics_dir=metrics_dir)
    # No access log: a line per request would cost more than the submit itself.
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.host, settings.port, backlog=1024, shutdown_timeout=5.0,
                      reuse_port=process_index is not None).start()  # fmt: skip
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if ready_fd is not None:
        tell_ready(ready_fd)
    else:
        bound = runner.addresses[0][1]
        print(READY_LINE.format(host=settings.host, port=bound), flush=True)
    watch = None if parent_pid is None else asyncio.create_task(_watch_parent(parent_pid, stop))
    await stop.wait()
    if watch is not None:
        watch.cancel()
    await runner.cleanup()


async def _watch_parent(parent_pid: int, stop: asyncio.Event) -> None:
    """Where the kernel cannot signal a child when its parent dies: look every second."""
    while os.getppid() == parent_pid:
        await asyncio.sleep(1.0)
    stop.set()
