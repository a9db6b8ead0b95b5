"""Command line of the simulator, shared by ``python -m simulator`` and ``comfyfarm sim``.

Once the server accepts connections it prints exactly one line to stdout,
``comfyfarm-sim listening on http://HOST:PORT``; everything else goes to stderr. SIGTERM and
SIGINT end the process at once (no WebSocket close frames, like ComfyUI) after removing the
temporary root directory it created.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from comfyfarm.simulator.config import (
    DEFAULT_MODELS,
    MODEL_FOLDERS,
    RECORDED_VERSION,
    SimConfig,
    Timing,
    is_jobs_generation,
)
from comfyfarm.simulator.faults import (
    DEFAULTS,
    FaultError,
    FaultTable,
    parse_fault_spec,
    parse_kinds,
)

if TYPE_CHECKING:
    from comfyfarm.simulator.instance import Simulator

READY_LINE = "comfyfarm-sim listening on http://{host}:{port}"


def _key_values(text: str, what: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return key.strip(), value.strip()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Every simulator flag, for both entry points."""
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=8188, help="port (default 8188; 0 picks a free one)"
    )
    parser.add_argument(
        "--root", type=Path, help="directory for output/, input/, temp/ (default: a new temp dir)"
    )
    models = parser.add_argument_group("models (fill ckpt_name, vae_name, ... lists)")
    models.add_argument(
        "--models",
        action="append",
        default=[],
        metavar="FOLDER=FILE[,FILE...]",
        help=f"model files of one folder, e.g. checkpoints=a.safetensors,b.safetensors (folders: "
        f"{', '.join(MODEL_FOLDERS[:4])}, ...); default: "
        + "; ".join(f"{k}={','.join(v)}" for k, v in DEFAULT_MODELS.items()),
    )
    models.add_argument(
        "--models-dir",
        type=Path,
        help="a models/ folder: its files (e.g. checkpoints/x.safetensors) are listed as ComfyUI "
        "lists them, including files added while it runs",
    )
    models.add_argument(
        "--no-models",
        action="store_true",
        help="start from empty model lists (like a bare ComfyUI)",
    )
    timing = parser.add_argument_group("simulated GPU time")
    timing.add_argument(
        "--step-ms", type=float, default=50.0, help="per KSampler step (default 50)"
    )
    timing.add_argument(
        "--load-ms", type=float, default=300.0, help="when the checkpoint changes (default 300)"
    )
    timing.add_argument(
        "--node-ms", type=float, default=0.0, help="base cost of every executed node (default 0)"
    )
    timing.add_argument(
        "--class-ms",
        action="append",
        default=[],
        metavar="CLASS=MS",
        help="extra cost of one node class, e.g. ImageBlur=1200 (repeatable)",
    )
    timing.add_argument(
        "--job-ms", type=float, help="fixed total per executed prompt, whatever its nodes"
    )
    behaviour = parser.add_argument_group("behaviour")
    behaviour.add_argument(
        "--previews", action="store_true", help="send a preview frame per sampler step"
    )
    jobs = behaviour.add_mutually_exclusive_group()
    jobs.add_argument(
        "--jobs-api",
        dest="jobs_api",
        action="store_true",
        help="serve the 2026 GET /api/jobs/{id} and POST /api/jobs/{id}/cancel",
    )
    jobs.add_argument(
        "--no-jobs-api",
        dest="jobs_api",
        action="store_false",
        help="do not (default for 0.3.64, as recorded; newer versions serve it)",
    )
    parser.set_defaults(jobs_api=None)
    behaviour.add_argument(
        "--comfy-version",
        default=RECORDED_VERSION,
        metavar="X.Y.Z",
        help=f"ComfyUI version to emulate (default {RECORDED_VERSION}, as recorded); a newer one "
        "also serves /api/jobs (list, get, cancel), refuses non-canonical prompt ids and lists "
        "every GPU in /system_stats",
    )
    behaviour.add_argument(
        "--gpus", type=int, default=1, help="devices listed in /system_stats (default 1)"
    )
    faults = parser.add_argument_group("fault injection (also POST /_sim/faults)")
    faults.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="NAME[:KEY=VALUE,...]",
        help=f"arm a fault ({', '.join(DEFAULTS)}); triggers nth=N, times=N, rate=P; "
        "e.g. crash:after_ms=500,nth=2  node_error:class_type=KSampler  prompt_5xx:times=2",
    )
    faults.add_argument(
        "--fault-rate",
        type=float,
        default=0.0,
        help="probability of a random fault per job/request",
    )
    faults.add_argument(
        "--fault-kinds",
        help="kinds for --fault-rate (default node_error,drop_ws,prompt_5xx,view_500)",
    )
    faults.add_argument(
        "--fault-seed", type=int, help="seed of the fault RNG (reproducible soak tests)"
    )
    parser.add_argument(
        "--access-log", action="store_true", help="log every HTTP request to stderr"
    )
    parser.add_argument("--log-level", default="warning", help="stderr log level (default warning)")


def config_from_args(args: argparse.Namespace) -> SimConfig:
    models: dict[str, tuple[str, ...]] = {} if args.no_models else dict(DEFAULT_MODELS)
    for text in args.models:
        folder, files = _key_values(text, "FOLDER=FILE[,FILE...]")
        if folder not in MODEL_FOLDERS:
            raise argparse.ArgumentTypeError(f"unknown model folder {folder!r}")
        models[folder] = tuple(f.strip() for f in files.split(",") if f.strip())
    class_ms = {}
    for text in args.class_ms:
        name, value = _key_values(text, "CLASS=MS")
        class_ms[name] = float(value)
    faults = {}
    for text in args.fault:
        name, params = parse_fault_spec(text)
        faults[name] = params
    timing = Timing(args.step_ms, args.load_ms, args.node_ms, args.job_ms, class_ms)
    newer = is_jobs_generation(args.comfy_version)  # ValueError for a malformed version
    if args.gpus < 1:
        raise ValueError("--gpus must be at least 1")
    return SimConfig(
        host=args.host,
        port=args.port,
        root=args.root,
        models=models,
        models_dir=args.models_dir,
        timing=timing,
        jobs_api=newer if args.jobs_api is None else args.jobs_api,
        comfy_version=args.comfy_version,
        gpus=args.gpus,
        previews=args.previews,
        faults=faults,
        fault_rate=args.fault_rate,
        fault_kinds=parse_kinds(args.fault_kinds) if args.fault_kinds else (),
        fault_seed=args.fault_seed,
        access_log=args.access_log,
    )


async def _serve(config: SimConfig, root: Path, scratch: Path | None) -> None:
    from aiohttp import web

    from comfyfarm.simulator.app import build_app
    from comfyfarm.simulator.instance import Simulator

    sim = Simulator(config, root, scratch=scratch)
    access_log = logging.getLogger("aiohttp.access") if config.access_log else None
    runner = web.AppRunner(build_app(sim), handle_signals=False, access_log=access_log)
    await runner.setup()
    await web.TCPSite(runner, config.host, config.port).start()
    port = runner.addresses[0][1]
    print(READY_LINE.format(host=config.host, port=port), flush=True)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _stop, sim, signum)
    await asyncio.Event().wait()


def _stop(sim: Simulator, signum: int) -> None:
    """Leave at once; one stderr line says when and why (a supervisor's log then shows the
    moment its ComfyUI was stopped, which tests compare with the jobs' results)."""
    name = signal.Signals(signum).name
    sys.stderr.write(f"comfyfarm-sim: stopped by {name} at {time.time():.6f}\n")
    sim.exit(0)


def serve(args: argparse.Namespace) -> int:
    """Run a simulator until SIGTERM/SIGINT; 2 on bad flags."""
    try:
        config = config_from_args(args)
        probe = FaultTable()
        for name, spec in config.faults.items():
            probe.arm(name, spec)
    except (argparse.ArgumentTypeError, FaultError, ValueError) as ex:
        print(f"comfyfarm-sim: {ex}", file=sys.stderr)
        return 2
    logging.getLogger("simulator").setLevel(args.log_level.upper())
    root, scratch = config.root, None
    if root is None:
        root = scratch = Path(tempfile.mkdtemp(prefix="comfyfarm-sim-"))
    asyncio.run(_serve(config, root, scratch))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m simulator", description="A ComfyUI-compatible simulator."
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return serve(args)
