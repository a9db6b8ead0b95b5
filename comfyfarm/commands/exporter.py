"""``comfyfarm exporter``: farm-wide Prometheus metrics (queue depths, workers, dead letters)."""

from __future__ import annotations

import argparse
import os
import sys
import threading


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        default=os.environ.get("COMFYFARM_METRICS_HOST", "127.0.0.1"),
        help="address to listen on (env COMFYFARM_METRICS_HOST; anything but loopback needs "
        "COMFYFARM_METRICS_TOKEN)",
    )
    parser.add_argument("--port", type=int, default=9180, help="port to listen on (9180)")


def run(args: argparse.Namespace) -> int:
    from comfyfarm.exporter import serve_exporter
    from comfyfarm.producer import Farm
    from comfyfarm.tasks.binding import open_metrics_refusal
    from comfyfarm.tasks.settings import Settings

    token = os.environ.get("COMFYFARM_METRICS_TOKEN") or None
    refusal = open_metrics_refusal(args.host, token)
    if refusal is not None:
        print(f"error: {refusal}", file=sys.stderr)
        return 2
    farm = Farm(Settings.from_env())
    farm.status(ping_timeout=None)  # fail now, with one line, if the broker is unreachable
    port = serve_exporter(farm, args.host, args.port, token=token)
    print(f"comfyfarm exporter on http://{args.host}:{port}/metrics", flush=True)
    threading.Event().wait()  # serve until interrupted
    return 0
