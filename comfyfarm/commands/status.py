"""``comfyfarm status``: workers, their ComfyUI and output store health, queue depths, running jobs.

Exit status 0 when at least one worker can take a job now, else 1 (usable as a health check).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from comfyfarm.producer.farm import Farm
    from comfyfarm.producer.status import FarmStatus


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    from comfyfarm.producer.farm import Farm

    farm = Farm.from_env()
    status = farm.status()
    letters = farm.dead_letters(limit=10) if status.dead_letters else []
    code = 0 if status.serving else 1
    phases = _job_phases(farm, status)
    if args.json:
        body = asdict(status)
        body["serving"] = len(status.serving)
        body["job_phases"] = phases
        body["recent_dead_letters"] = [letter.to_dict() for letter in letters]
        print(json.dumps(body, sort_keys=True, default=str))
        return code
    print(f"workers ({len(status.workers)}, {len(status.serving)} can take jobs):")
    for worker in status.workers:
        info = worker.info
        online = {True: "online", False: "no ping", None: "?"}[worker.online]
        job = ""
        if info.current_job:
            job = f" {_doing(phases.get(info.current_job))} {info.current_job}"
        # health "storage": ComfyUI answers but the output store cannot be written.
        comfy = "ok" if info.health == "storage" else info.health
        store = str(info.extra.get("storage", "ok"))
        store = "ok" if store == "ok" else f"UNWRITABLE ({store})"
        print(
            f"  {info.name:<12} {info.comfy_url:<28} comfyui {comfy:<9} {online}"
            f" (beat {worker.heartbeat_age:.0f}s ago) store {store}{job}"
        )
    print("queues:")
    for queue in status.queues:
        print(f"  {queue.name:<32} {_queued(queue.total, queue.cancelled)}")
    print(f"running jobs: {len(status.running)}")
    for running in status.running:
        doing = _doing(phases.get(running.job_id))
        print(f"  {running.job_id}  held by {running.holder}  ({doing})")
    print(f"dead letters: {status.dead_letters}")
    for entry in letters:
        print(f"  {entry}")
    for warning in status.warnings:
        print(f"warning: {warning}")
    if not status.serving:
        print("no worker can take a job now (none registered, or none with a healthy ComfyUI)")
    return code


def _queued(total: int, cancelled: int) -> str:
    """Jobs that will run, and apart from them those cancelled but still in the list."""
    if not cancelled:
        return str(total)
    return f"{total - cancelled} queued ({cancelled} cancelled, dropped when a worker takes them)"


# What a job's progress phase means to someone reading ``status``: a job ComfyUI accepted but has
# not started yet waits in ComfyUI's own queue (another prompt runs there), it is not running.
_PHASE_WORDS = {
    "queued": "starting",
    "uploading": "uploading inputs",
    "downloading": "downloading a model",
    "submitted": "waiting in ComfyUI's queue",
    "running": "running",
    "collecting": "collecting outputs",
}


def _doing(phase: str | None) -> str:
    return _PHASE_WORDS.get(phase or "", "running")


def _job_phases(farm: Farm, status: FarmStatus) -> dict[str, str]:
    """The progress phase of every job a worker holds (no entry: no progress reported yet)."""
    from comfyfarm.producer.errors import ProducerError
    from comfyfarm.tasks.errors import ContractError

    ids = {w.info.current_job for w in status.workers if w.info.current_job}
    ids |= {running.job_id for running in status.running}
    phases: dict[str, str] = {}
    for job_id in sorted(ids):
        try:
            progress = farm.job(job_id).progress()
        except (ProducerError, ContractError):
            continue
        if progress is not None:
            phases[job_id] = progress.phase
    return phases
