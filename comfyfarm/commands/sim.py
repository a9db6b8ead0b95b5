"""``comfyfarm sim``: the ComfyUI-compatible simulator, same flags as ``python -m simulator``."""

from __future__ import annotations

import argparse

from comfyfarm.simulator.cli import add_arguments, serve


def configure(parser: argparse.ArgumentParser) -> None:
    add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return serve(args)
