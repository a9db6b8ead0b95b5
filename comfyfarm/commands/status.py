"""``comfyfarm status``: workers and their ComfyUI health, queue depths, running jobs."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    from comfyfarm.producer.cli import status_command

    return status_command(args)
