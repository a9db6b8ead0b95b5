"""``comfyfarm cancel JOB``: drop a queued job, or interrupt exactly that running prompt."""

from __future__ import annotations

import argparse
from dataclasses import asdict


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_id", help="the job's id, or any unique prefix of it")
    parser.add_argument("--reason", default="cancelled from the command line")
    parser.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    from comfyfarm.producer.farm import Farm
    from comfyfarm.reporting import emit

    farm = Farm.from_env()
    job = farm.find_job(args.job_id)  # UnknownJob: "unknown" or "ambiguous", exit 2
    outcome = job.cancel(reason=args.reason)
    emit(asdict(outcome), args.json, text=str(outcome))
    return 0
