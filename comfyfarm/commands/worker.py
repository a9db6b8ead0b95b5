"""``comfyfarm worker``: run a worker bound to one ComfyUI instance."""

from __future__ import annotations

import argparse
import os


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--comfy-url",
        default=os.environ.get("COMFYFARM_COMFY_URL", "http://127.0.0.1:8188"),
        help="the ComfyUI this worker feeds (env COMFYFARM_COMFY_URL)",
    )
    parser.add_argument(
        "--name",
        default=os.environ.get("COMFYFARM_WORKER_NAME", "gpu0"),
        help="short worker name, also its queue comfyfarm.worker.NAME",
    )
    parser.add_argument(
        "--capability",
        action="append",
        default=[],
        metavar="CAP",
        help="consume comfyfarm.cap.CAP too (repeatable), e.g. sdxl",
    )
    parser.add_argument("--queues", default="", help="extra queues to consume, comma-separated")
    parser.add_argument(
        "--health-interval", type=float, default=2.0, help="seconds between ComfyUI health checks"
    )
    parser.add_argument(
        "--depth",
        type=int,
        default=int(os.environ.get("COMFYFARM_DEPTH", "1")),
        help="prompts kept waiting in ComfyUI's own queue behind the running one "
        "(0 = submit only when idle; env COMFYFARM_DEPTH)",
    )
    parser.add_argument("--loglevel", default="INFO")


def run(args: argparse.Namespace) -> int:
    from comfyfarm.tasks.settings import Settings
    from comfyfarm.worker.service import WorkerOptions, run_worker

    options = WorkerOptions(
        comfy_url=args.comfy_url.rstrip("/"),
        name=args.name,
        capabilities=args.capability,
        extra_queues=[q for q in args.queues.split(",") if q],
        health_interval=args.health_interval,
        loglevel=args.loglevel,
        depth=args.depth,
    )
    run_worker(Settings.from_env(), options)
    return 0
