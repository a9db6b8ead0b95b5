"""How the command line shows jobs and results: one line of text per thing for people, or one
JSON object per line with ``--json`` (shared by ``submit``, ``result`` and the demo)."""

from __future__ import annotations

import json
from typing import Any

from comfyfarm.tasks.models import JobResult


def emit(body: dict[str, Any], as_json: bool, *, text: str) -> None:
    """Print ``body`` as one JSON line, or ``text`` for people."""
    print(json.dumps(body, sort_keys=True, default=str) if as_json else text, flush=True)


def describe_result(result: JobResult) -> str:
    """A result for people: status, worker and time, the error (with its node), the outputs,
    the job's ComfyUI log."""
    lines = [
        f"job {result.job_id}: {result.status} on {result.worker or '?'}"
        f" ({result.timings.run_seconds:.2f} s) {short_params(result.params)}"
    ]
    if result.error:
        where = ""
        if result.error.get("node_id"):
            where = f" at node {result.error['node_id']} ({result.error.get('node_type')})"
        lines.append(f"  error{where}: {result.error.get('message')}")
    for record in result.outputs:
        shown = record.uri or repr(record.value)
        lines.append(f"  node {record.node_id} {record.kind}: {shown}")
    if result.log:
        lines.append(f"  ComfyUI log: {result.log}")
    return "\n".join(lines)


def short_params(params: dict[str, Any]) -> str:
    """``name=value`` pairs, cut to 80 characters."""
    text = " ".join(f"{k}={v!r}" for k, v in params.items())
    return text if len(text) <= 80 else text[:77] + "..."
