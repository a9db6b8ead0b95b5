"""``comfyfarm submit``: validate a workflow's jobs, enqueue them, optionally wait for them.

The job options (``--label``, ``--deadline``, ``--queue``, ...) are made from the fields of
``JobOptions`` (``add_option_arguments``), so every option the Python API takes is a flag here
too. Output for people by default, one JSON object per line with ``--json``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections import Counter
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from comfyfarm.commands.run import add_job_arguments
from comfyfarm.tasks.options import JobOptions

if TYPE_CHECKING:
    from comfyfarm.producer.farm import Farm
    from comfyfarm.producer.job import Job
    from comfyfarm.tasks.models import JobResult

_SINGLE_TYPES = {"text": str, "number": float, "integer": int}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workflow", help="workflow file (API or UI format) or a library name")
    add_job_arguments(parser)
    where = parser.add_argument_group("validation (default: schemas published by the workers)")
    where.add_argument(
        "--comfy-url",
        default=os.environ.get("COMFYFARM_COMFY_URL"),
        help="validate against this ComfyUI",
    )
    where.add_argument("--object-info", help="validate against a saved /object_info file")
    where.add_argument("--no-validate", action="store_true", help="enqueue without checking")
    route = parser.add_argument_group("routing (instead of --queue)")
    route.add_argument("--worker", help="pin the jobs to one worker (its own queue)")
    route.add_argument("--capability", help="send to workers that declare this capability")
    route.add_argument(
        "--allow-offline",
        action="store_true",
        help="queue for --worker/--capability/--queue even when no live worker consumes it",
    )
    add_option_arguments(parser)
    parser.add_argument("--wait", action="store_true", help="wait, showing progress bars")
    parser.add_argument("--timeout", type=float, default=None, help="seconds to wait per job")
    parser.add_argument("--out", help="with --wait: copy the outputs into this directory")
    parser.add_argument("--json", action="store_true", help="one JSON object per job")


def add_option_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per JobOptions field (``dest`` = the field name), from the field's metadata.
    Options of kind ``workflow`` (``params``) come from ``--param``/``--sweep`` instead."""
    group = parser.add_argument_group("job options")
    for spec in fields(JobOptions):
        kind = spec.metadata["kind"]
        if kind == "workflow":
            continue
        extra: dict[str, Any] = {"dest": spec.name, "help": spec.metadata["help"]}
        if spec.metadata["metavar"]:
            extra["metavar"] = spec.metadata["metavar"]
        if kind in _SINGLE_TYPES:
            extra.update(type=_SINGLE_TYPES[kind], default=None)
        else:
            parse = {"pairs": _pair, "input": _input, "list": str}[kind]
            extra.update(action="append", type=parse, default=[])
        group.add_argument(spec.metadata["flag"], **extra)


def options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The JobOptions keywords the flags gave (flags not given are left out)."""
    options: dict[str, Any] = {}
    for spec in fields(JobOptions):
        kind = spec.metadata["kind"]
        value = getattr(args, spec.name, None) if kind != "workflow" else None
        if value is None or value == []:
            continue
        options[spec.name] = dict(value) if kind == "pairs" else value
    return options


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"wants KEY=VALUE, got {text!r}")
    return key, value


def _input(text: str) -> tuple[str, str, str]:
    target, sep, source = text.partition("=")
    node_id, dot, input_name = target.rpartition(".")
    if not (sep and dot and node_id and input_name and source):
        raise argparse.ArgumentTypeError(f"wants NODE_ID.INPUT=PATH_OR_URL, got {text!r}")
    return node_id, input_name, source


def run(args: argparse.Namespace) -> int:
    from comfyfarm.producer.errors import ProducerError
    from comfyfarm.producer.farm import Farm
    from comfyfarm.producer.schema_lookup import NoSchemaSource, find_schema, published_schemas
    from comfyfarm.reporting import emit, short_params
    from comfyfarm.tasks.errors import ContractError
    from comfyfarm.tasks.schemas import PublishedSchema
    from comfyfarm.workflows import SchemaSource, WorkflowError, prepare_jobs

    farm = Farm.from_env()
    try:
        options = options_from_args(args)
        options["queue"] = _queue(args)
        queue = options["queue"]
        if queue is not None and not args.allow_offline:
            _require_a_consumer(farm, queue)
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
        if published:
            del options["queue"]
            handles = farm.submit_routed(jobs, schemas=published, **options)
            _say_routing(handles)
        else:
            handles = farm.submit_many(jobs, **options)
    except (NoSchemaSource, WorkflowError, ContractError, ProducerError, ValueError) as exc:
        # ValueError: a priority outside 0..9 (tasks.routing.celery_priority)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.wait:
        for job, prepared in zip(handles, jobs, strict=True):
            emit(
                {
                    "job_id": job.job_id,
                    "status": "queued",
                    "queue": job.queue,
                    "params": prepared.params,
                },
                args.json,
                text=f"queued {job.job_id} {short_params(prepared.params)}",
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
    from comfyfarm.tasks.routing import SHARED_QUEUE

    routed = Counter(handle.queue for handle in handles if handle.queue not in (None, SHARED_QUEUE))
    if routed:
        where = ", ".join(f"{queue} ({count})" for queue, count in sorted(routed.items()))
        print(
            f"{sum(routed.values())} of {len(handles)} job(s) need nodes or models that only some "
            f"workers have; sent to: {where}",
            file=sys.stderr,
        )


def _require_a_consumer(farm: Farm, queue: str) -> None:
    """Refuse a queue that no registered worker consumes: its jobs would wait forever."""
    from comfyfarm.producer.errors import ProducerError

    workers = farm.status(ping_timeout=None).workers
    if any(queue in worker.info.queues for worker in workers):
        return
    names = ", ".join(sorted(worker.info.name for worker in workers)) or "none"
    raise ProducerError(
        f"no live worker consumes {queue} (workers: {names}); start one, or pass "
        "--allow-offline to queue the jobs for a worker that will come"
    )


def _queue(args: argparse.Namespace) -> str | None:
    from comfyfarm.tasks.routing import capability_queue, check_queue, worker_queue

    if args.worker:
        return worker_queue(args.worker)
    if args.capability:
        return capability_queue(args.capability)
    return check_queue(args.queue) if args.queue else None


def wait_all(farm: Farm, handles: list[Job], args: argparse.Namespace) -> int:
    """Follow ``handles`` with progress bars (``args``: json, timeout, out); report each result
    in submission order. One Redis subscription follows them all (``Farm.as_completed``)."""
    from comfyfarm.producer.errors import WaitTimeout
    from comfyfarm.progressbar import ProgressBars
    from comfyfarm.reporting import describe_result, emit
    from comfyfarm.tasks.models import JobProgress

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
        emit(body, args.json, text=text)
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
