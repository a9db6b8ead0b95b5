"""``comfyfarm run``: one workflow straight on one ComfyUI, no broker (the seed's run.py, done
right).

Loads the workflow (API or UI format, a path or a library name), applies ``--param``/``--set``/
``--sweep``, validates every job against that ComfyUI's node schemas and model lists before
anything is queued, then runs the jobs one after another through the same spec builder as
``comfyfarm submit`` (with no farm: no farm defaults or caps) and the same runner the farm's
workers use, downloading every output into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
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
    parser.add_argument(
        "--count",
        type=int,
        default=1,
        help="repeat each job N times; identical prompts are ComfyUI cache hits (the same "
        "files), so for N different images add --param seed=random",
    )


def run(args: argparse.Namespace) -> int:
    from comfyfarm.comfy.client import ComfyClient
    from comfyfarm.comfy.errors import ComfyError
    from comfyfarm.producer.build import build_spec
    from comfyfarm.storage import open_store
    from comfyfarm.tasks.models import JobProgress
    from comfyfarm.worker.policy import run_once
    from comfyfarm.worker.runner import JobContext
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

    _warn_repeats(jobs)
    out_dir = Path(args.out).resolve()
    store = open_store(out_dir.as_uri())
    bars = ProgressBars(enabled=not args.json)
    failures = 0
    client_id = str(uuid.uuid4())  # one socket identity for the whole run
    for job in jobs:
        spec = build_spec(
            job, deadline_seconds=args.deadline, stall_timeout_seconds=args.stall_timeout
        )

        def show(progress: JobProgress, job_id: str = spec.job_id) -> None:
            bars.update(job_id, progress.to_dict())

        ctx = JobContext(client=client, store=store, client_id=client_id, on_progress=show)
        # Every outcome, failures included, leaves result.json beside the outputs.
        result = run_once(spec, ctx)
        bars.finish(spec.job_id, result.status)
        _report(_direct_result(result.to_dict()), args.json)
        failures += result.status != "succeeded"
    return 1 if failures else 0


def _warn_repeats(jobs: list[Any]) -> None:
    """Say on stderr when jobs repeat an identical prompt (ComfyUI cache hits, same files)."""
    from comfyfarm.workflows.repeats import repeat_warning

    warning = repeat_warning([job.prompt for job in jobs], [job.params for job in jobs])
    if warning:
        print(warning, file=sys.stderr)


_OUTPUT_KEYS = ("node_id", "kind", "filename", "bytes", "hash", "mime", "cached", "animated")


def _direct_result(result: dict[str, Any]) -> dict[str, Any]:
    """The result as direct mode prints it: local paths instead of storage URIs."""
    outputs = []
    for record in result.get("outputs", []):
        item = {k: record.get(k) for k in _OUTPUT_KEYS}
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


def _report(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, sort_keys=True), flush=True)
        return
    print(f"job {result['prompt_id']}: {result['status']}")
    if result.get("error"):
        print(f"  error: {result['error'].get('message')}")
    for output in result["outputs"]:
        where = output.get("path") or repr(output.get("value"))
        flags = "".join(f" ({flag})" for flag in ("animated", "cached") if output.get(flag))
        print(f"  node {output['node_id']} {output['kind']}: {where}{flags}")
