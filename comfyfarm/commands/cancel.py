"""``comfyfarm cancel JOB``: drop a queued job, or interrupt exactly that running prompt."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_id")
    parser.add_argument("--reason", default="cancelled from the command line")
    parser.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    from comfyfarm.producer.cli import cancel_command

    return cancel_command(args)
