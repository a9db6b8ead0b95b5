"""``comfyfarm result JOB``: a job's result (outputs, error, timings).

Exit status 0 for a succeeded job, 1 for a failed or cancelled one (or ``--wait`` timing out),
4 when the job has no result yet (``comfyfarm.exits``).
"""

from __future__ import annotations

import argparse

from comfyfarm.exits import NOT_FINISHED


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_id", help="the job's id, or any unique prefix of it")
    parser.add_argument("--wait", action="store_true", help="wait until the job finishes")
    parser.add_argument("--timeout", type=float, default=None)
    parser.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    import sys

    from comfyfarm.producer.errors import JobTimeout
    from comfyfarm.producer.farm import Farm
    from comfyfarm.reporting import describe_result, emit

    farm = Farm.from_env()
    job = farm.find_job(args.job_id)
    try:
        result = job.wait(args.timeout) if args.wait else job.result()
    except JobTimeout as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if result is None:
        emit(
            {"job_id": job.job_id, "status": job.status()},
            args.json,
            text=f"job {job.job_id}: {job.status()} (no result yet)",
        )
        return NOT_FINISHED
    emit(result.to_dict(), args.json, text=describe_result(result))
    return 0 if result.status == "succeeded" else 1
