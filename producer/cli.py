"""The producer side of the command line: ``submit``, ``status``, ``result``, ``cancel``.

Each ``*_command`` takes the parsed arguments and returns an exit code; ``comfyfarm/commands/``
holds the thin argparse shells. Output for people by default, one JSON object per line with
``--json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from comfyfarm.producer.errors import JobTimeout, ProducerError, WaitTimeout
from comfyfarm.producer.farm import Farm
from comfyfarm.producer.job import Job
from comfyfarm.producer.schema_lookup import NoSchemaSource, find_schema, published_schemas
from comfyfarm.tasks.errors import ContractError
from comfyfarm.tasks.models import JobProgress, JobResult
from comfyfarm.tasks.routing import SHARED_QUEUE, capability_queue, check_queue, worker_queue
from comfyfarm.tasks.schemas import PublishedSchema


def submit_command(args: argparse.Namespace) -> int:
    from comfyfarm.workflows import SchemaSource, WorkflowError, prepare_jobs

    farm = Farm.from_env()
    try:
        queue = _queue(args)
        schema: SchemaSource | None = None
        published: list[PublishedSchema] = []
        if not args.no_validate and (args.object_info or args.comfy_url or queue is not None):
            schema = find_schema(
                farm.settings,
                object_info=args.object_info,
                comfy_url=args.comfy_url,
                worker=args.worker,
            )
        elif not args.no_validate:
            # Every worker's schema is checked per job, and the job routed to those that can run it.
            published = published_schemas(farm.settings)
            newest = published[0]
            schema = SchemaSource.from_object_info(newest.object_info, models=newest.models)
        jobs = prepare_jobs(
            args.workflow,
            schema=schema,
            params=args.param,
            sets=args.set,
            sweeps=args.sweep,
            zip_sweeps=args.zip,
            count=args.count,
            validate=schema is not None and not published,
        )
        _warn_repeats(jobs)
        options: dict[str, Any] = {
            "priority": args.priority,
            "labels": dict(_pairs(args.label)),
            "webhook_url": args.webhook,
            "deadline_seconds": args.deadline,
        }
        if published:
            handles = farm.submit_routed(jobs, schemas=published, **options)
            _say_routing(handles)
        else:
            handles = farm.submit_many(jobs, queue=queue, **options)
    except (NoSchemaSource, WorkflowError, ContractError, ProducerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.wait:
        for job, prepared in zip(handles, jobs, strict=True):
            _emit(
                {
                    "job_id": job.job_id,
                    "status": "queued",
                    "queue": job.queue,
                    "params": prepared.params,
                },
                args.json,
                text=f"queued {job.job_id} {_short(prepared.params)}",
            )
        return 0
    return wait_all(farm, handles, args)


def _warn_repeats(jobs: list[Any]) -> None:
    """Say on stderr when jobs repeat an identical prompt (ComfyUI cache hits, same files)."""
    from comfyfarm.workflows.repeats import repeat_warning

    warning = repeat_warning([job.prompt for job in jobs], [job.params for job in jobs])
    if warning:
        print(warning, file=sys.stderr)


def _say_routing(handles: list[Job]) -> None:
    """Tell (on stderr) where jobs went when not every worker can run them."""
    routed = Counter(handle.queue for handle in handles if handle.queue not in (None, SHARED_QUEUE))
    if routed:
        where = ", ".join(f"{queue} ({count})" for queue, count in sorted(routed.items()))
        print(
            f"{sum(routed.values())} of {len(handles)} job(s) need nodes or models that only some "
            f"workers have; sent to: {where}",
            file=sys.stderr,
        )


def _queue(args: argparse.Namespace) -> str | None:
    if args.worker:
        return worker_queue(args.worker)
    if args.capability:
        return capability_queue(args.capability)
    return check_queue(args.queue) if args.queue else None


def wait_all(farm: Farm, handles: list[Job], args: argparse.Namespace) -> int:
    """Follow ``handles`` with progress bars (``args``: json, timeout, out); report each result
    in submission order. One Redis subscription follows them all (``Farm.as_completed``)."""
    from comfyfarm.progressbar import ProgressBars

    bars = ProgressBars(enabled=not args.json)
    out_dir = Path(args.out).resolve() if args.out else None
    finished: dict[str, JobResult] = {}
    for job in handles:
        bars.update(job.job_id, {"phase": "queued"})

    def show(job_id: str, progress: JobProgress) -> None:
        bars.update(job_id, progress.to_dict())

    try:
        for done in farm.as_completed(handles, args.timeout, on_progress=show):
            bars.finish(done.job_id, done.status)
            finished[done.job_id] = done
    except WaitTimeout as exc:
        for job_id in exc.pending:
            bars.finish(job_id, "timeout")
        print(f"error: {exc}", file=sys.stderr)
    failures = 0
    for job in handles:
        result = finished.get(job.job_id)
        if result is None:
            failures += 1
            continue
        body = result.to_dict()
        text = describe_result(result)
        if out_dir is not None and result.status == "succeeded":
            body["downloaded"] = _download(result, out_dir)
            text += "".join(f"\n  copied to {path}" for path in body["downloaded"])
        _emit(body, args.json, text=text)
        failures += result.status != "succeeded"
    return 1 if failures else 0


def _download(result: JobResult, out_dir: Path) -> list[str]:
    """Copy ``file://`` outputs into ``out_dir/<job_id>/`` (other stores: printed URIs only)."""
    copied: list[str] = []
    for record in result.outputs:
        if not record.uri or not record.uri.startswith("file://"):
            continue
        source = Path(unquote(urlparse(record.uri).path))
        target = out_dir / result.job_id / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        copied.append(str(target))
    return copied


def status_command(args: argparse.Namespace) -> int:
    """Print the farm's state; exit 0 when at least one worker can take a job now, else 1
    (usable as a health check)."""
    farm = Farm.from_env()
    status = farm.status()
    letters = farm.dead_letters(limit=10) if status.dead_letters else []
    code = 0 if status.serving else 1
    phases = _job_phases(farm, status)
    if args.json:
        body = _status_dict(status)
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
        print(
            f"  {info.name:<12} {info.comfy_url:<28} comfyui {info.health:<9} {online}"
            f" (beat {worker.heartbeat_age:.0f}s ago){job}"
        )
    print("queues:")
    for queue in status.queues:
        print(f"  {queue.name:<32} {queue.total}")
    print(f"running jobs: {len(status.running)}")
    for running in status.running:
        doing = _doing(phases.get(running.job_id))
        print(f"  {running.job_id}  held by {running.holder}  ({doing})")
    print(f"dead letters: {status.dead_letters}")
    for entry in letters:
        print(f"  {entry}")
    if not status.serving:
        print("no worker can take a job now (none registered, or none with a healthy ComfyUI)")
    return code


# What a job's progress phase means to someone reading ``status``: a job ComfyUI accepted but has
# not started yet waits in ComfyUI's own queue (another prompt runs there), it is not running.
_PHASE_WORDS = {
    "queued": "starting",
    "uploading": "uploading inputs",
    "submitted": "waiting in ComfyUI's queue",
    "running": "running",
    "collecting": "collecting outputs",
}


def _doing(phase: str | None) -> str:
    return _PHASE_WORDS.get(phase or "", "running")


def _job_phases(farm: Farm, status: Any) -> dict[str, str]:
    """The progress phase of every job a worker holds (no entry: no progress reported yet)."""
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


def _status_dict(status: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(status)


def result_command(args: argparse.Namespace) -> int:
    farm = Farm.from_env()
    job = farm.job(args.job_id)
    try:
        result = job.wait(args.timeout) if args.wait else job.result()
    except JobTimeout as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if result is None:
        _emit(
            {"job_id": args.job_id, "status": job.status()},
            args.json,
            text=f"job {args.job_id}: {job.status()} (no result yet)",
        )
        return 3
    _emit(result.to_dict(), args.json, text=describe_result(result))
    return 0 if result.status == "succeeded" else 1


def cancel_command(args: argparse.Namespace) -> int:
    farm = Farm.from_env()
    outcome = farm.cancel(args.job_id, reason=args.reason)
    from dataclasses import asdict

    _emit(asdict(outcome), args.json, text=str(outcome))
    return 0


def describe_result(result: JobResult) -> str:
    lines = [
        f"job {result.job_id}: {result.status} on {result.worker or '?'}"
        f" ({result.timings.run_seconds:.2f} s) {_short(result.params)}"
    ]
    if result.error:
        where = ""
        if result.error.get("node_id"):
            where = f" at node {result.error['node_id']} ({result.error.get('node_type')})"
        lines.append(f"  error{where}: {result.error.get('message')}")
    for record in result.outputs:
        shown = record.uri or repr(record.value)
        lines.append(f"  node {record.node_id} {record.kind}: {shown}")
    return "\n".join(lines)


def _short(params: dict[str, Any]) -> str:
    text = " ".join(f"{k}={v!r}" for k, v in params.items())
    return text if len(text) <= 80 else text[:77] + "..."


def _pairs(items: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"error: --label wants KEY=VALUE, got {item!r}")
        pairs.append((key, value))
    return pairs


def _emit(body: dict[str, Any], as_json: bool, *, text: str) -> None:
    print(json.dumps(body, sort_keys=True, default=str) if as_json else text, flush=True)
