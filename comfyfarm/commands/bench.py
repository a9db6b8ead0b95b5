"""``comfyfarm bench [throughput|enqueue|outputs]``: benchmarks on this machine (simulated GPUs).

``throughput`` (the default) compares native, naive and farm on one fleet; ``enqueue`` times
``submit_many``; ``outputs`` streams a big file from ``/view`` into ``file://`` storage. A table
goes to stdout, or with ``--json`` one JSON object per mode/benchmark per line; progress goes to
stderr. Exit status 1 when any job of a throughput run did not finish.
"""

from __future__ import annotations

import argparse
import os
import sys

BENCHMARKS = ("throughput", "enqueue", "outputs")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "benchmark", nargs="?", choices=BENCHMARKS, default="throughput",
        help="which benchmark (default throughput)",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    throughput = parser.add_argument_group("throughput")
    throughput.add_argument("--instances", type=int, default=8, help="simulated GPUs (8)")
    throughput.add_argument("--job-ms", type=float, default=1000.0, help="GPU ms per job (1000)")
    throughput.add_argument("--jobs", type=int, default=64, help="jobs per mode (64)")
    throughput.add_argument(
        "--modes", default="native,naive,farm", help="comma-separated subset of native,naive,farm"
    )
    throughput.add_argument(
        "--serial",
        action="store_true",
        help="closed loop: at most one job in flight per instance (latency = per-job overhead)",
    )
    throughput.add_argument("--timeout", type=float, default=900.0, help="seconds per mode")
    enqueue = parser.add_argument_group("enqueue")
    enqueue.add_argument("--count", type=int, default=20_000, help="jobs to enqueue (20000)")
    enqueue.add_argument("--chunk", type=int, default=500, help="jobs per Redis pipeline (500)")
    enqueue.add_argument(
        "--broker-url",
        default=os.environ.get("COMFYFARM_BROKER_URL"),
        help="Redis to use (env COMFYFARM_BROKER_URL; default: an embedded Valkey)",
    )
    outputs = parser.add_argument_group("outputs")
    outputs.add_argument("--size-mb", type=float, default=200.0, help="output size in MiB (200)")
    outputs.add_argument("--repeats", type=int, default=3, help="runs of each path (3)")


def run(args: argparse.Namespace) -> int:
    if args.benchmark == "enqueue":
        return _enqueue(args)
    if args.benchmark == "outputs":
        return _outputs(args)
    return _throughput(args)


def _throughput(args: argparse.Namespace) -> int:
    from comfyfarm.bench.report import print_json_lines, throughput_table
    from comfyfarm.bench.throughput import ThroughputOptions, parse_modes, run_throughput

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
        instances=args.instances,
        job_ms=args.job_ms,
        jobs=args.jobs,
        modes=modes,
        serial=args.serial,
        timeout=args.timeout,
    )
    figures = run_throughput(options)
    if args.json:
        print_json_lines(({**f.to_dict(), "serial": args.serial} for f in figures), sys.stdout)
    else:
        loop = "closed loop, one job in flight per instance" if args.serial else "all jobs up front"
        print(
            f"{args.instances} instance(s) x {args.job_ms:g} ms/job, {args.jobs} jobs per mode "
            f"({loop}); percentiles nearest-rank"
        )
        print(throughput_table(figures))
    return 1 if any(f.failed for f in figures) else 0


def _enqueue(args: argparse.Namespace) -> int:
    import json

    from comfyfarm.bench.enqueue import enqueue_dict, run_enqueue

    try:
        outcome = run_enqueue(args.count, broker_url=args.broker_url, chunk_size=args.chunk)
    except ValueError as exc:
        print(f"comfyfarm bench enqueue: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(enqueue_dict(outcome)) if args.json else outcome)
    return 0


def _outputs(args: argparse.Namespace) -> int:
    import json

    from comfyfarm.bench.outputs import run_outputs

    try:
        figures = run_outputs(args.size_mb, repeats=args.repeats)
    except ValueError as exc:
        print(f"comfyfarm bench outputs: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(figures.to_dict()) if args.json else figures)
    return 0
