"""``comfyfarm run``: one workflow straight on one ComfyUI, no broker (the seed's run.py, done
right).

Loads the workflow (API or UI format, a path or a library name), applies ``--param``/``--set``/
``--sweep``, validates every job against that ComfyUI's node schemas and model lists before
anything is queued, then runs the jobs one after another through the same runner the farm's
workers use, downloading every output into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from comfyfarm.progressbar import ProgressBars

DEFAULT_COMFY_URL = "http://127.0.0.1:8188"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workflow", help="workflow file (API or UI format) or a library name")
    parser.add_argument(
        "--comfy-url",
        default=os.environ.get("COMFYFARM_COMFY_URL", DEFAULT_COMFY_URL),
        help="ComfyUI base URL (env COMFYFARM_COMFY_URL)",
    )
    add_job_arguments(parser)
    parser.add_argument("--out", default="comfyfarm-output", help="directory for the outputs")
    parser.add_argument("--json", action="store_true", help="print one JSON object per job")
    parser.add_argument("--deadline", type=float, default=1800.0, help="seconds per job")
    parser.add_argument(
        "--stall-timeout",
        type=float,
        default=120.0,
        help="seconds without any event before reconciling with ComfyUI",
    )


def add_job_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments that turn a workflow into jobs (shared with ``comfyfarm submit``)."""
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="named parameter, e.g. prompt='a cat' or seed=random",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="TARGET=VALUE",
        help="override by node id, title, class or JSON pointer, e.g. 6.text=hi",
    )
    parser.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="NAME=VALUES",
        help="sweep a parameter: seed=1..8, prompt=@prompts.txt, cfg=5,7,9",
    )
    parser.add_argument(
        "--zip",
        action="store_true",
        help="pair sweeps element by element instead of the cartesian product",
    )
    parser.add_argument("--count", type=int, default=1, help="repeat each job N times")


def run(args: argparse.Namespace) -> int:
    from comfyfarm.comfy.client import ComfyClient
    from comfyfarm.comfy.errors import ComfyError
    from comfyfarm.storage import open_store
    from comfyfarm.storage.base import StorageError
    from comfyfarm.tasks.models import InputFile, JobProgress, JobSpec
    from comfyfarm.worker.inputs import InputFileError
    from comfyfarm.worker.runner import JobContext, run_job
    from comfyfarm.workflows import SchemaSource, SchemaUnavailable, WorkflowError, prepare_jobs

    client = ComfyClient(args.comfy_url.rstrip("/"))
    try:
        schema = SchemaSource.from_url(client.base_url)
        # prepare_jobs validates every job against the schema and model lists before any runs
        jobs = prepare_jobs(
            args.workflow,
            schema=schema,
            params=args.param,
            sets=args.set,
            sweeps=args.sweep,
            zip_sweeps=args.zip,
            count=args.count,
        )
    except SchemaUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except WorkflowError as exc:
        print(f"error: workflow rejected before submission:\n{exc}", file=sys.stderr)
        return 2
    except ComfyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3

    out_dir = Path(args.out).resolve()
    store = open_store(out_dir.as_uri())
    bars = ProgressBars(enabled=not args.json)
    failures = 0
    client_id = str(uuid.uuid4())  # one socket identity for the whole run
    for job in jobs:
        spec = JobSpec(
            job_id=str(uuid.uuid4()),
            prompt=job.prompt,
            inputs=[
                InputFile(
                    node_id=ref.node_id,
                    input_name=ref.input_name,
                    source=ref.source,
                    filename=ref.filename,
                )
                for ref in job.inputs
            ],
            deadline_seconds=args.deadline,
            stall_timeout_seconds=args.stall_timeout,
            params=job.params,
            workflow_name=job.workflow_name,
            enqueued_at=time.time(),
        )

        def show(progress: JobProgress, job_id: str = spec.job_id) -> None:
            bars.update(job_id, progress.to_dict())

        ctx = JobContext(client=client, store=store, client_id=client_id, on_progress=show)
        try:
            result = run_job(spec, ctx)
        except (ComfyError, InputFileError, StorageError) as exc:
            failures += 1
            bars.finish(spec.job_id, "failed")
            _report(
                {
                    "prompt_id": spec.job_id,
                    "status": "failed",
                    "error": _error(exc),
                    "params": job.params,
                    "outputs": [],
                },
                args.json,
            )
            continue
        bars.finish(spec.job_id, result.status)
        _report(_direct_result(result.to_dict()), args.json)
        failures += result.status != "succeeded"
    return 1 if failures else 0


def _direct_result(result: dict[str, Any]) -> dict[str, Any]:
    """The result as direct mode prints it: local paths instead of storage URIs."""
    outputs = []
    for record in result.get("outputs", []):
        item = {k: record.get(k) for k in ("node_id", "kind", "filename", "bytes", "hash", "mime")}
        uri = record.get("uri")
        item["path"] = unquote(urlparse(uri).path) if uri else None
        if record.get("value") is not None:
            item["value"] = record["value"]
        outputs.append(item)
    return {
        "prompt_id": result["job_id"],
        "status": result["status"],
        "error": result.get("error"),
        "params": result.get("params", {}),
        "outputs": outputs,
    }


def _error(exc: Exception) -> dict[str, Any]:
    to_dict = getattr(exc, "to_dict", None)
    return (
        dict(to_dict()) if callable(to_dict) else {"type": type(exc).__name__, "message": str(exc)}
    )


def _report(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, sort_keys=True), flush=True)
        return
    print(f"job {result['prompt_id']}: {result['status']}")
    if result.get("error"):
        print(f"  error: {result['error'].get('message')}")
    for output in result["outputs"]:
        where = output.get("path") or repr(output.get("value"))
        print(f"  node {output['node_id']} {output['kind']}: {where}")
