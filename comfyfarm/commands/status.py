"""``comfyfarm status``: workers and their ComfyUI health, queue depths, running jobs.

Exit status 0 when at least one worker can take a job now, else 1 (usable as a health check).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    from comfyfarm.producer.farm import Farm

    farm = Farm.from_env()
    status = farm.status()
    letters = farm.dead_letters(limit=10) if status.dead_letters else []
    code = 0 if status.serving else 1
    if args.json:
        body = asdict(status)
        body["serving"] = len(status.serving)
        body["recent_dead_letters"] = [letter.to_dict() for letter in letters]
        print(json.dumps(body, sort_keys=True, default=str))
        return code
    print(f"workers ({len(status.workers)}, {len(status.serving)} can take jobs):")
    for worker in status.workers:
        info = worker.info
        online = {True: "online", False: "no ping", None: "?"}[worker.online]
        job = f" running {info.current_job}" if info.current_job else ""
        print(
            f"  {info.name:<12} {info.comfy_url:<28} comfyui {info.health:<9} {online}"
            f" (beat {worker.heartbeat_age:.0f}s ago){job}"
        )
    print("queues:")
    for queue in status.queues:
        print(f"  {queue.name:<32} {queue.total}")
    print(f"running jobs: {len(status.running)}")
    for running in status.running:
        print(f"  {running.job_id}  held by {running.holder}")
    print(f"dead letters: {status.dead_letters}")
    for entry in letters:
        print(f"  {entry}")
    for warning in status.warnings:
        print(f"warning: {warning}")
    if not status.serving:
        print("no worker can take a job now (none registered, or none with a healthy ComfyUI)")
    return code
