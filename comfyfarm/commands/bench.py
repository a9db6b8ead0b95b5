"""``comfyfarm bench [throughput|enqueue|outputs|soak|results|broker|gateway|affinity]``: benchmarks

``throughput`` (the default) compares native, naive and farm on one fleet; ``enqueue`` times
``submit_many``; ``outputs`` streams a big file from ``/view`` into ``file://`` storage; ``soak``
runs many jobs through the farm while simulators crash and hang and workers are killed
(``comfyfarm_bench.soak``); ``broker`` measures what a job costs Redis (commands, bytes,
server CPU) and projects what one Redis can carry; ``gateway`` measures the Comfy API v2
gateway (POST latency, submit rate, RSS with 1,000 open event streams); ``results`` runs the
standard set and renders the README's results table (``--write README.md`` updates it in
place). ``affinity`` compares jobs routed to where their checkpoint is loaded with one
shared queue (``comfyfarm_bench.affinity``). A table goes to stdout, or with ``--json`` one
JSON object per mode/benchmark per line; progress goes to stderr. Exit status 1 when any job
of a throughput or affinity run did not finish, or when a soak lost a job or executed a prompt
twice.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

BENCHMARKS = (
    "throughput", "enqueue", "outputs", "soak", "results", "broker", "gateway", "affinity",
)  # fmt: skip
THROUGHPUT_JOBS, SOAK_JOBS = 64, 2000
THROUGHPUT_JOB_MS, SOAK_JOB_MS = 1000.0, 20.0
#: Seconds between worker kills; at the defaults a takeover takes ~35 s, so kills are sparser.
SOAK_KILL_EVERY, SOAK_KILL_EVERY_DEFAULTS = 30.0, 60.0


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "benchmark", nargs="?", choices=BENCHMARKS, default="throughput",
        help="which benchmark (default throughput)",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    throughput = parser.add_argument_group("throughput")
    throughput.add_argument("--instances", type=int, default=8, help="simulated GPUs (8)")
    throughput.add_argument(
        "--job-ms", type=float, default=None, help="GPU ms per job (1000; soak 20)"
    )
    throughput.add_argument("--jobs", type=int, default=None, help="jobs per mode (64; soak 2000)")
    throughput.add_argument(
        "--modes", default="native,naive,farm", help="comma-separated subset of native,naive,farm"
    )
    throughput.add_argument(
        "--serial",
        action="store_true",
        help="closed loop: at most one job in flight per instance (latency = per-job overhead)",
    )
    throughput.add_argument(
        "--timeout", type=float, default=900.0, help="seconds per mode (soak: the whole run)"
    )
    throughput.add_argument(
        "--comfy-url", action="append", default=[], metavar="URL",
        help="run on this ComfyUI instead of simulators (repeatable; --instances is ignored)",
    )  # fmt: skip
    throughput.add_argument(
        "--workflow", help="with --comfy-url: workflow to run (default sd15_text2image)"
    )
    throughput.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE",
        help="with --comfy-url: a workflow parameter (repeatable)",
    )  # fmt: skip
    throughput.add_argument(
        "--set", action="append", default=[], metavar="TARGET=VALUE",
        help="with --comfy-url: an override by node id, title or class (repeatable)",
    )  # fmt: skip
    enqueue = parser.add_argument_group("enqueue")
    enqueue.add_argument("--count", type=int, default=20_000, help="jobs to enqueue (20000)")
    enqueue.add_argument("--chunk", type=int, default=500, help="jobs per Redis pipeline (500)")
    enqueue.add_argument(
        "--broker-url",
        default=os.environ.get("COMFYFARM_BROKER_URL"),
        help="Redis to use (env COMFYFARM_BROKER_URL; default: an embedded Valkey)",
    )
    affinity = parser.add_argument_group("affinity")
    affinity.add_argument("--gpus", type=int, default=4, help="simulated GPUs (4)")
    affinity.add_argument("--load-ms", type=float, default=3000.0, help="checkpoint load (3000)")
    affinity.add_argument("--checkpoints", type=int, default=8, help="checkpoints, Zipf (8)")
    outputs = parser.add_argument_group("outputs")
    outputs.add_argument("--size-mb", type=float, default=200.0, help="output size in MiB (200)")
    outputs.add_argument("--repeats", type=int, default=3, help="runs of each path (3)")
    results = parser.add_argument_group("results")
    results.add_argument(
        "--write", metavar="FILE", help="put the table between the bench-results markers of FILE"
    )
    results.add_argument(
        "--quick", action="store_true", help="tiny sizes (a smoke test; figures meaningless)"
    )
    gateway = parser.add_argument_group("gateway")
    gateway.add_argument("--requests", type=int, default=1000, help="sequential POSTs (1000)")
    gateway.add_argument("--rate-requests", type=int, default=4000, help="POSTs for the rate")
    gateway.add_argument("--concurrency", type=int, default=32, help="concurrent clients (32)")
    gateway.add_argument("--streams", type=int, default=1000, help="open event streams (1000)")
    gateway.add_argument("--processes", type=int, default=1,
                         help="gateway processes (comfyfarm gateway --processes; 1)")  # fmt: skip
    soak = parser.add_argument_group("soak")
    soak.add_argument("--workers", type=int, default=4, help="simulators, one worker each (4)")
    soak.add_argument(
        "--faults", choices=("random", "none"), default="random",
        help="random simulator faults and worker kills (default), or none",
    )  # fmt: skip
    soak.add_argument(
        "--fault-rate", type=float, default=0.02, help="chance of each fault kind per prompt (0.02)"
    )
    soak.add_argument(
        "--fault-kinds", default="crash,hang,drop_ws", help="simulator faults (crash,hang,drop_ws)"
    )
    soak.add_argument(
        "--kill-every", type=float, default=None,
        help="SIGKILL a random worker every N s and restart it (30, --defaults 60; 0 = never)",
    )  # fmt: skip
    soak.add_argument(
        "--defaults", action="store_true",
        help="the product's default settings (visibility timeout, lease, stall timeout ...) "
        "instead of the fault tests' short ones; recovery_seconds then shows the takeover",
    )  # fmt: skip
    soak.add_argument("--seed", type=int, default=1, help="seed of prompts, faults and kills (1)")
    soak.add_argument(
        "--settle", type=float, default=10.0,
        help="seconds to keep watching after the last result, for late re-runs (10)",
    )  # fmt: skip
    soak.add_argument("--depth", type=int, default=1, help="worker pipelining depth (1)")
    soak.add_argument(
        "--workdir", type=Path, default=None,
        help="keep store and worker logs here (default: a temp dir, kept only if jobs went wrong)",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    if args.benchmark == "enqueue":
        return _enqueue(args)
    if args.benchmark == "outputs":
        return _outputs(args)
    if args.benchmark == "soak":
        return _soak(args)
    if args.benchmark == "results":
        return _results(args)
    if args.benchmark == "broker":
        return _broker(args)
    if args.benchmark == "gateway":
        return _gateway(args)
    if args.benchmark == "affinity":
        return _affinity(args)
    return _throughput(args)


def _gateway(args: argparse.Namespace) -> int:
    import json

    from comfyfarm_bench.gateway import run_gateway

    figures = run_gateway(
        latency_requests=args.requests,
        rate_requests=args.rate_requests,
        concurrency=args.concurrency,
        streams=args.streams,
        processes=args.processes,
    )
    print(json.dumps(figures.to_dict()) if args.json else figures)
    return 0


def _affinity(args: argparse.Namespace) -> int:
    """Affinity vs shared queue: model loads, throughput, waits (one JSON line per mode)."""
    import json
    import tempfile

    from comfyfarm_bench.affinity import format_table, run_affinity

    jobs = 400 if args.jobs is None else args.jobs
    job_ms = 1000.0 if args.job_ms is None else args.job_ms
    if jobs < 1 or args.gpus < 1 or args.checkpoints < 1:
        print(
            "comfyfarm bench affinity: --jobs, --gpus, --checkpoints must be >= 1", file=sys.stderr
        )
        return 2
    with tempfile.TemporaryDirectory(prefix="comfyfarm-bench-affinity-") as workdir:
        records = run_affinity(
            instances=args.gpus, jobs=jobs, models=args.checkpoints, job_ms=job_ms,
            load_ms=args.load_ms, workdir=Path(workdir), timeout=args.timeout,
        )  # fmt: skip
    print("\n".join(json.dumps(r) for r in records) if args.json else format_table(records))
    return 0 if all(r["failed"] == 0 for r in records) else 1


def _broker(args: argparse.Namespace) -> int:
    """Broker cost per job (commands, bytes, Redis CPU) and the projected ceiling of one Redis."""
    import json
    import tempfile

    from comfyfarm_bench.broker import run_broker_cost

    jobs = 2000 if args.jobs is None else args.jobs
    job_ms = 20.0 if args.job_ms is None else args.job_ms
    if jobs < 1 or args.instances < 1:
        print("comfyfarm bench broker: --jobs and --instances must be >= 1", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="comfyfarm-bench-broker-") as workdir:
        cost = run_broker_cost(jobs=jobs, instances=args.instances, job_ms=job_ms,
                               timeout=args.timeout, workdir=Path(workdir))  # fmt: skip
    if args.json:
        print(json.dumps(cost.to_dict()))
    else:
        for key, value in cost.to_dict().items():
            print(f"{key:>32}: {value}")
    return 0 if cost.jobs == jobs else 1


def _results(args: argparse.Namespace) -> int:
    from comfyfarm_bench.results import QUICK, Plan, machine_line, measure, render, replace_section

    path = Path(args.write) if args.write else None
    if path is not None:  # before minutes of measuring, not after
        try:
            replace_section(path.read_text(encoding="utf-8"), "")
        except (OSError, ValueError) as exc:
            print(f"comfyfarm bench results: {path}: {exc}", file=sys.stderr)
            return 2
    block = render(measure(QUICK if args.quick else Plan()), measured_on=machine_line())
    if path is None:
        print(block)
        return 0
    path.write_text(replace_section(path.read_text(encoding="utf-8"), block), encoding="utf-8")
    print(f"wrote the results table into {path}", file=sys.stderr)
    return 0


def _throughput(args: argparse.Namespace) -> int:
    from comfyfarm_bench.report import print_json_lines, throughput_table
    from comfyfarm_bench.throughput import ThroughputOptions, parse_modes, run_throughput

    from comfyfarm.comfy.errors import ComfyError
    from comfyfarm.workflows import WorkflowError

    args.jobs = THROUGHPUT_JOBS if args.jobs is None else args.jobs
    args.job_ms = THROUGHPUT_JOB_MS if args.job_ms is None else args.job_ms
    try:
        modes = parse_modes(args.modes)
    except ValueError as exc:
        print(f"comfyfarm bench: {exc}", file=sys.stderr)
        return 2
    if args.instances < 1 or args.jobs < 1 or args.job_ms < 0:
        print(
            "comfyfarm bench: --instances and --jobs must be >= 1, --job-ms >= 0", file=sys.stderr
        )
        return 2
    options = ThroughputOptions(
        instances=len(args.comfy_url) or args.instances,
        job_ms=args.job_ms,
        jobs=args.jobs,
        modes=modes,
        serial=args.serial,
        timeout=args.timeout,
        comfy_urls=tuple(args.comfy_url),
        workflow=args.workflow,
        params=tuple(args.param),
        sets=tuple(args.set),
    )
    if (args.workflow or args.param or args.set) and not args.comfy_url:
        print("comfyfarm bench: --workflow/--param/--set need --comfy-url", file=sys.stderr)
        return 2
    try:
        figures = run_throughput(options)
    except (ComfyError, WorkflowError) as exc:  # a server or workflow given by the user
        if not args.comfy_url:
            raise
        print(f"comfyfarm bench: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print_json_lines(({**f.to_dict(), "serial": args.serial} for f in figures), sys.stdout)
    else:
        loop = "closed loop, one job in flight per instance" if args.serial else "all jobs up front"
        what = f"{args.instances} instance(s) x {args.job_ms:g} ms/job"
        if args.comfy_url:
            what = f"{len(args.comfy_url)} ComfyUI server(s), {args.workflow or 'sd15_text2image'}"
        print(f"{what}, {args.jobs} jobs per mode ({loop}); percentiles nearest-rank")
        print(throughput_table(figures))
    return 1 if any(f.failed for f in figures) else 0


def _enqueue(args: argparse.Namespace) -> int:
    import json

    from comfyfarm_bench.enqueue import enqueue_dict, run_enqueue

    try:
        outcome = run_enqueue(args.count, broker_url=args.broker_url, chunk_size=args.chunk)
    except ValueError as exc:
        print(f"comfyfarm bench enqueue: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(enqueue_dict(outcome)) if args.json else outcome)
    return 0


def _outputs(args: argparse.Namespace) -> int:
    import json

    from comfyfarm_bench.outputs import run_outputs

    try:
        figures = run_outputs(args.size_mb, repeats=args.repeats)
    except ValueError as exc:
        print(f"comfyfarm bench outputs: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(figures.to_dict()) if args.json else figures)
    return 0


def _soak(args: argparse.Namespace) -> int:
    from comfyfarm_bench.soak import SoakError, SoakOptions, run_soak, summary_json

    try:
        options = SoakOptions(
            jobs=SOAK_JOBS if args.jobs is None else args.jobs,
            workers=args.workers,
            faults=args.faults == "random",
            fault_rate=args.fault_rate,
            fault_kinds=tuple(k.strip() for k in args.fault_kinds.split(",") if k.strip()),
            job_ms=SOAK_JOB_MS if args.job_ms is None else args.job_ms,
            kill_every=_kill_every(args),
            seed=args.seed,
            timeout=args.timeout,
            settle=args.settle,
            depth=args.depth,
            workdir=args.workdir,
            defaults=args.defaults,
        )
        options.check()
    except SoakError as exc:
        print(f"comfyfarm bench soak: {exc}", file=sys.stderr)
        return 2
    summary = run_soak(options)
    if args.json:
        print(summary_json(summary))
    else:
        data = summary.to_dict()
        for key in ("submitted", "succeeded", "failed_permanent", "failed_by_error", "cancelled",
                    "lost", "duplicate_executions", "retried", "faults_injected", "seconds",
                    "workdir"):  # fmt: skip
            print(f"{key:22} {data[key]}")
        recovery = data["recovery"]
        print(f"{'recovery_seconds':22} {recovery['recovery_seconds']} over "
              f"{recovery['kills_with_jobs']} kills with jobs ({recovery['not_recovered']} "
              "not recovered)")  # fmt: skip
    return 0 if summary.healthy else 1


def _kill_every(args: argparse.Namespace) -> float:
    if args.kill_every is not None:
        return float(args.kill_every)
    return SOAK_KILL_EVERY_DEFAULTS if args.defaults else SOAK_KILL_EVERY
