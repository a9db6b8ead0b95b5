"""``comfyfarm compose``: print a docker compose override with one ComfyUI + worker per GPU."""

from __future__ import annotations

import argparse
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--gpus", required=True, help="GPU ids, comma-separated (e.g. 0,1,2,3); pair K gets GPU K"
    )
    parser.add_argument(
        "--capability",
        action="append",
        default=[],
        help="a capability every generated worker announces (repeatable), e.g. sdxl",
    )


def run(args: argparse.Namespace) -> int:
    from comfyfarm.compose import ComposeSpecError, compose_override, parse_gpus, render

    try:
        override = compose_override(parse_gpus(args.gpus), args.capability)
    except ComposeSpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(render(override))
    return 0
