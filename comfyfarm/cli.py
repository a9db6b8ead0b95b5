"""The ``comfyfarm`` command: a dispatcher over one module per subcommand.

Each subcommand lives in ``comfyfarm/commands/<name>.py`` and exposes ``configure(parser)`` and
``run(args) -> int``. Only the module of the command being run is imported, so ``comfyfarm submit``
never loads worker or WebSocket code and ``comfyfarm --help`` starts fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from comfyfarm import __version__, exits

# name -> one line of help. The order is the order of `comfyfarm --help`.
COMMANDS: dict[str, str] = {
    "demo": "start everything on this machine and run a small sweep of the SD1.5 workflow",
    "run": "run one workflow straight on one ComfyUI (no broker) and download its outputs",
    "convert": "convert a UI-format workflow (saved by the ComfyUI editor) to API format",
    "validate": "check a workflow against a ComfyUI's node schemas and model lists",
    "submit": "enqueue jobs (a workflow with parameters, sweeps, counts) into the farm",
    "status": "show workers, their ComfyUI health, queue depths and running jobs",
    "result": "show the result of a job",
    "cancel": "cancel a queued or running job",
    "worker": "run a worker bound to one ComfyUI instance",
    "gateway": "serve Comfy API v2 (the official comfy-sdk clients) in front of the farm",
    "flower": "run Flower, the Celery monitor, with the farm's settings",
    "exporter": "serve farm-wide Prometheus metrics: queue depths, workers, dead letters",
    "compose": "print a docker compose override with one ComfyUI + worker pair per GPU",
    "sim": "run the ComfyUI-compatible simulator (a stand-in GPU box)",
    "bench": "benchmarks: native vs naive vs farm throughput, enqueue rate, output streaming",
}


def _top_level_parser() -> argparse.ArgumentParser:
    width = max(len(name) for name in COMMANDS)
    listing = "\n".join(f"  {name.ljust(width)}  {text}" for name, text in COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog="comfyfarm",
        description="A render farm for ComfyUI.",
        epilog=f"commands:\n{listing}\n\nRun 'comfyfarm COMMAND --help' for a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="comfyfarm [--version] [-v] COMMAND [ARGS...]",
    )
    parser.add_argument("--version", action="version", version=f"comfyfarm {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    parser.add_argument("command", nargs="?", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_level_parser()
    # Split "[global options] COMMAND [command args]" at the first known command name.
    split = next((i for i, word in enumerate(argv) if word in COMMANDS), None)
    if split is None:
        namespace = top.parse_args(argv)
        if namespace.command is not None:
            top.error(f"unknown command {namespace.command!r}; see 'comfyfarm --help'")
        top.print_help()
        return 2
    global_ns = top.parse_args(argv[:split])
    name = argv[split]
    logging.basicConfig(
        level=logging.DEBUG if global_ns.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    args: argparse.Namespace | None = None
    try:
        module = importlib.import_module(f"comfyfarm.commands.{name}")
        parser = argparse.ArgumentParser(prog=f"comfyfarm {name}", description=COMMANDS[name])
        module.configure(parser)
        args = parser.parse_args(argv[split + 1 :])
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        return exits.INTERRUPTED
    except Exception as exc:
        explained = exits.explain(exc, broker_url=getattr(args, "broker_url", None))
        if explained is None:
            raise
        status, message = explained
        print(f"comfyfarm {name}: {message}", file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
