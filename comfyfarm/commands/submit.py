"""``comfyfarm submit``: validate a workflow's jobs, enqueue them, optionally wait for them."""

from __future__ import annotations

import argparse
import os

from comfyfarm.commands.run import add_job_arguments


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workflow", help="workflow file (API or UI format) or a library name")
    add_job_arguments(parser)
    where = parser.add_argument_group("validation (default: schemas published by the workers)")
    where.add_argument(
        "--comfy-url",
        default=os.environ.get("COMFYFARM_COMFY_URL"),
        help="validate against this ComfyUI",
    )
    where.add_argument("--object-info", help="validate against a saved /object_info file")
    where.add_argument("--no-validate", action="store_true", help="enqueue without checking")
    route = parser.add_argument_group("routing")
    route.add_argument("--queue", help="a farm queue name (default: the shared queue)")
    route.add_argument("--worker", help="pin the jobs to one worker (its own queue)")
    route.add_argument("--capability", help="send to workers that declare this capability")
    route.add_argument("--priority", type=int, default=None, help="0 (lowest) .. 9, default 5")
    parser.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--webhook", help="URL that receives the signed result")
    parser.add_argument("--deadline", type=float, default=None, help="seconds per job")
    parser.add_argument("--wait", action="store_true", help="wait, showing progress bars")
    parser.add_argument("--timeout", type=float, default=None, help="seconds to wait per job")
    parser.add_argument("--out", help="with --wait: copy the outputs into this directory")
    parser.add_argument("--json", action="store_true", help="one JSON object per job")


def run(args: argparse.Namespace) -> int:
    from comfyfarm.producer.cli import submit_command

    return submit_command(args)
