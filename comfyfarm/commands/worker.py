"""``comfyfarm worker``: run a worker bound to one ComfyUI instance."""

from __future__ import annotations

import argparse
import os
import shlex
import sys


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
    models = parser.add_argument_group("models on demand")
    models.add_argument(
        "--models-dir",
        help="its ComfyUI's models/ folder: models named by URL are downloaded there once "
        "(env COMFYFARM_MODELS_DIR)",
    )
    models.add_argument(
        "--models-cache-gb",
        type=float,
        help="evict least recently used downloads above this (env COMFYFARM_MODELS_CACHE_GB)",
    )
    supervised = parser.add_argument_group(
        "a supervised ComfyUI (started, restarted, stopped by the worker)"
    )
    supervised.add_argument(
        "--comfy-cmd",
        default=os.environ.get("COMFYFARM_COMFY_CMD"),
        help='start ComfyUI with this command, e.g. "python main.py --port 8188" '
        "(env COMFYFARM_COMFY_CMD); --comfy-url is where it will answer",
    )
    supervised.add_argument("--comfy-cwd", help="directory to start it in (ComfyUI's folder)")
    supervised.add_argument(
        "--comfy-log", help="file for its output (default comfyfarm-logs/comfyui-NAME.log)"
    )
    supervised.add_argument(
        "--warmup", metavar="PROMPT.json", help="an API-format prompt to run before taking jobs"
    )
    supervised.add_argument(
        "--recycle-after-jobs", type=int, help="restart it after this many jobs (when idle)"
    )
    supervised.add_argument(
        "--recycle-above-mb", type=int, help="restart it when its resident memory passes this"
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=int(os.environ["COMFYFARM_METRICS_PORT"])
        if os.environ.get("COMFYFARM_METRICS_PORT")
        else None,
        help="serve Prometheus metrics on this port (env COMFYFARM_METRICS_PORT; 0 = any free)",
    )
    parser.add_argument(
        "--metrics-host",
        default=os.environ.get("COMFYFARM_METRICS_HOST", "127.0.0.1"),
        help="address of the metrics endpoint (env COMFYFARM_METRICS_HOST; anything but loopback "
        "needs COMFYFARM_METRICS_TOKEN)",
    )


def run(args: argparse.Namespace) -> int:
    from comfyfarm.tasks.binding import open_metrics_refusal
    from comfyfarm.tasks.settings import Settings
    from comfyfarm.worker.service import WorkerOptions, run_worker

    # The job code reads these settings in the pool's processes: hand them over through the
    # environment, before the pool forks.
    if args.models_dir:
        os.environ["COMFYFARM_MODELS_DIR"] = os.path.abspath(args.models_dir)
    if args.models_cache_gb is not None:
        os.environ["COMFYFARM_MODELS_CACHE_GB"] = str(args.models_cache_gb)
    token = os.environ.get("COMFYFARM_METRICS_TOKEN") or None
    refusal = (
        open_metrics_refusal(args.metrics_host, token) if args.metrics_port is not None else None
    )
    if refusal is not None:
        print(f"error: {refusal}", file=sys.stderr)
        return 2

    options = WorkerOptions(
        comfy_url=args.comfy_url.rstrip("/"),
        name=args.name,
        capabilities=args.capability,
        extra_queues=[q for q in args.queues.split(",") if q],
        health_interval=args.health_interval,
        loglevel=args.loglevel,
        depth=args.depth,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        metrics_token=token,
        comfy_cmd=shlex.split(args.comfy_cmd) if args.comfy_cmd else None,
        comfy_cwd=args.comfy_cwd,
        comfy_log=args.comfy_log,
        warmup_prompt=args.warmup,
        recycle_after_jobs=args.recycle_after_jobs,
        recycle_above_mb=args.recycle_above_mb,
    )
    run_worker(Settings.from_env(), options)
    return 0
