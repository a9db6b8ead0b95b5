"""``comfyfarm result JOB``: a job's result (outputs, error, timings)."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_id")
    parser.add_argument("--wait", action="store_true", help="wait until the job finishes")
    parser.add_argument("--timeout", type=float, default=None)
    parser.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    from comfyfarm.producer.cli import result_command

    return result_command(args)
