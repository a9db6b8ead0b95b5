"""``comfyfarm flower``: Flower with the farm's settings, auth and metric buckets for long jobs.

Basic auth comes from ``COMFYFARM_FLOWER_BASIC_AUTH`` (``user:password``). Without it Flower binds
to loopback only; binding any other address without auth is refused. Prometheus ``/metrics`` uses
runtime buckets that fit minutes-long GPU jobs.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys

RUNTIME_BUCKETS = "1,5,10,30,60,120,300,600,1200,1800,3600,inf"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=5555)
    parser.add_argument(
        "--address",
        default="127.0.0.1",
        help="address to bind (a non-loopback one needs basic auth)",
    )
    parser.add_argument("--url-prefix", default="", help="when served behind a proxy path")


def flower_argv(args: argparse.Namespace, basic_auth: str | None) -> list[str]:
    """The ``celery flower`` arguments; refuses an unauthenticated non-loopback bind."""
    if not basic_auth and not _is_loopback(args.address):
        raise SystemExit(
            f"refusing to serve Flower on {args.address} without auth: "
            "set COMFYFARM_FLOWER_BASIC_AUTH=user:password"
        )
    argv = [
        "flower",
        f"--port={args.port}",
        f"--address={args.address}",
        f"--task-runtime-metric-buckets={RUNTIME_BUCKETS}",
        "--purge_offline_workers=300",
    ]
    if basic_auth:
        argv.append(f"--basic-auth={basic_auth}")
    if args.url_prefix:
        argv.append(f"--url-prefix={args.url_prefix}")
    return argv


def _is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    from tasks.app import make_app
    from tasks.settings import Settings

    settings = Settings.from_env()
    app = make_app(settings)
    try:
        argv = flower_argv(args, settings.flower_basic_auth)
    except SystemExit as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    app.start(argv)
    return 0
