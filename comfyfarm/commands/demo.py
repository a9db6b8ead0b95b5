"""``comfyfarm demo``: start everything on this machine and run a sweep of the SD1.5 workflow."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sims", type=int, default=2, help="simulated ComfyUI instances")
    parser.add_argument(
        "--comfy-url",
        action="append",
        default=[],
        help="use this real ComfyUI instead of simulators (repeatable)",
    )
    parser.add_argument("--jobs", type=int, default=6, help="jobs in the sweep (seeds 1..N)")
    parser.add_argument(
        "--workflow",
        default="sd15_text2image",
        help="another library workflow or file runs --jobs times as it is",
    )
    parser.add_argument("--prompt", default="a lighthouse on a cliff at dusk, oil painting")
    parser.add_argument("--step-ms", type=int, default=40, help="simulated time per step")
    parser.add_argument("--no-flower", action="store_true")
    parser.add_argument("--no-gateway", action="store_true", help="no Comfy API v2 gateway")
    parser.add_argument(
        "--serve",
        action="store_true",
        help="after the sweep, keep the farm up (no terminal needed) until SIGTERM, SIGHUP or "
        "Ctrl-C",
    )
    parser.add_argument(
        "--exit",
        action="store_true",
        help="stop as soon as the sweep is done (default when not on a terminal)",
    )


def run(args: argparse.Namespace) -> int:
    from comfyfarm.demo import run_demo

    return run_demo(args)
