"""Farm state → the contract's ``Job`` object (and the lighter list item, and event payloads).

Status words map as follows; ``expired`` is a job past its retention (``expires_at``) whose
gateway record is still kept (``job_records.EXPIRED_GRACE``): its outputs and result are gone
whatever the farm said, and after the grace it is gone too (404):

=====================  ===========  ====================================================
farm (producer word)   v2 status    note
=====================  ===========  ====================================================
unknown                queued       accepted by the gateway, not yet visible in the farm
queued, retrying       queued       a retry goes back to a queue
running                running
cancelling             canceling    cancel requested; the worker interrupts its prompt
succeeded / failed     same
cancelled              canceled
=====================  ===========  ====================================================

Outputs are assets: each stored output gets a stable asset id (UUIDv5 of job, node, kind and
index), and ``url`` is the gateway's own content URL for it (``outputs.py`` serves it).
"""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from comfyfarm.gateway.job_records import JobRecord
from comfyfarm.gateway.job_state import FarmView
from comfyfarm.tasks.models import JobProgress, JobResult, OutputRecord

if TYPE_CHECKING:
    from comfyfarm.gateway.content_links import ContentLinks

API = "/api/v2"
TERMINAL = frozenset({"succeeded", "failed", "canceled", "expired"})
_STATUS = {
    "unknown": "queued",
    "queued": "queued",
    "retrying": "queued",
    "running": "running",
    "cancelling": "canceling",
    "succeeded": "succeeded",
    "failed": "failed",
    "cancelled": "canceled",
}
_OUTPUT_TYPES = {
    "images": "image",
    "gifs": "video",
    "videos": "video",
    "video": "video",
    "audio": "audio",
    "text": "text",
    "string": "text",
    "latents": "latent",
    "latent": "latent",
}
_DEFAULT_MIME = {"text": "text/plain; charset=utf-8", "latent": "application/octet-stream"}
OUTPUT_NAMESPACE = uuid.UUID("6f1c7f0e-4d0a-4b9e-9a77-2f0d6a3c9b10")
MAX_TRACEBACK = 16 * 1024


def iso(timestamp: float | None) -> str | None:
    if not timestamp:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


def v2_status(farm_status: str) -> str:
    return _STATUS.get(farm_status, "queued")


def output_asset_id(job_id: str, record: OutputRecord) -> str:
    """The asset id of one output: stable, so every gateway names it the same."""
    return str(
        uuid.uuid5(OUTPUT_NAMESPACE, f"{job_id}/{record.node_id}/{record.kind}/{record.index}")
    )


def blake3_of(digest: str) -> str | None:
    """The contract's ``hash`` (``blake3:<hex>``) of an output; None for other digests (a
    farm configured for SHA-256 or none: the contract's hash is nullable)."""
    return digest if digest.startswith("blake3:") else None


def output_type(kind: str) -> str:
    return _OUTPUT_TYPES.get(kind, "file")


def render_job(
    record: JobRecord,
    farm: FarmView,
    *,
    origin: str,
    retention: float,
    queue_position: int | None = None,
    links: ContentLinks | None = None,
) -> dict[str, Any]:
    """The spec's ``Job`` for one job (``origin``: scheme://host of the request, for URLs;
    ``links``: presigned output URLs where the store signs)."""
    expires = record.created_at + retention
    if is_expired(record, retention):
        return render_expired(record, expires)
    status = v2_status(farm.status)
    result = farm.result
    timings = result.timings if result is not None else None
    started = timings.started_at if timings is not None else None
    job: dict[str, Any] = {
        "id": record.job_id,
        "status": status,
        "created_at": iso(record.created_at),
        "started_at": iso(started),
        "completed_at": iso(timings.finished_at) if timings is not None else None,
        "expires_at": iso(expires),
        "queue_position": queue_position if status == "queued" else None,
        "progress": render_progress(farm.progress) if status in ("running", "canceling") else None,
        "outputs": [
            render_output(record.job_id, item, origin=origin, expires=expires, links=links)
            for item in farm.outputs
        ],  # fmt: skip
        "error": render_error(result) if result is not None and status != "succeeded" else None,
        "metrics": render_metrics(result),
        "urls": job_urls(record.job_id),
        "metadata": dict(record.metadata),
    }
    if status == "succeeded":
        nodes = len(record.workflow)
        job["progress"] = {"value": 1.0, "nodes_done": nodes, "nodes_total": nodes}
    return job


def is_expired(record: JobRecord, retention: float, *, now: float | None = None) -> bool:
    """Past its retention: the farm has deleted (or is about to delete) its state and outputs."""
    return (time.time() if now is None else now) >= record.created_at + retention


def render_expired(record: JobRecord, expires: float) -> dict[str, Any]:
    """The Job of an expired job: what the gateway's record still knows, nothing else."""
    return {
        "id": record.job_id,
        "status": "expired",
        "created_at": iso(record.created_at),
        "started_at": None,
        "completed_at": None,
        "expires_at": iso(expires),
        "queue_position": None,
        "progress": None,
        "outputs": [],
        "error": {
            "code": "expired",
            "message": f"the job passed its retention at {iso(expires)}: its result and "
            "outputs were deleted",
        },
        "metrics": {"queue_ms": None, "execution_ms": None},
        "urls": job_urls(record.job_id),
        "metadata": dict(record.metadata),
    }


def render_summary(
    record: JobRecord, farm: FarmView, *, retention: float | None = None
) -> dict[str, Any]:
    """One item of ``GET /jobs``: lighter than a Job (no outputs, no links)."""
    result = farm.result
    updated = result.timings.finished_at if result is not None else None
    expired = retention is not None and is_expired(record, retention)
    return {
        "id": record.job_id,
        "status": "expired" if expired else v2_status(farm.status),
        "create_time": iso(record.created_at),
        "update_time": iso(updated or record.created_at),
        "created_at": iso(record.created_at),
        "metadata": dict(record.metadata),
    }


def job_urls(job_id: str) -> dict[str, str]:
    base = f"{API}/jobs/{job_id}"
    return {"self": base, "events": f"{base}/events", "cancel": f"{base}/cancel"}


def render_progress(progress: JobProgress | None) -> dict[str, Any] | None:
    if progress is None:
        return None
    steps = int(progress.max) if progress.max > 0 else None
    step = int(progress.value) if steps is not None else None
    message = None
    if progress.node_type:
        message = progress.node_type + (f" {step}/{steps}" if steps is not None else "")
    return {
        "value": round(min(1.0, max(0.0, progress.percent / 100.0)), 4),
        "nodes_done": progress.nodes_done,
        "nodes_total": progress.nodes_total,
        "current_node": progress.node,
        "current_node_class": progress.node_type,
        "step": step,
        "steps": steps,
        "message": message,
    }


def render_output(
    job_id: str,
    item: OutputRecord,
    *,
    origin: str,
    expires: float,
    links: ContentLinks | None = None,
) -> dict[str, Any]:
    kind = output_type(item.kind)
    asset_id = output_asset_id(job_id, item)
    size = item.bytes if item.uri is not None else len(value_bytes(item))
    url, url_expires = f"{origin}{API}/assets/{asset_id}/content", expires
    if links is not None:
        url, url_expires = links.link(asset_id, item.uri, origin, expires)
    return {
        "node_id": item.node_id,
        "name": item.filename or f"{item.node_id}_{item.kind}_{item.index}.txt",
        "type": kind,
        "content_type": item.mime or _DEFAULT_MIME.get(kind, "application/octet-stream"),
        "size_bytes": size,
        "id": asset_id,
        "hash": blake3_of(item.hash),
        "url": url,
        "url_expires_at": iso(url_expires),
        "job_id": job_id,
    }


def value_bytes(item: OutputRecord) -> bytes:
    """A value output (text, numbers) as the bytes its content URL serves."""
    import json

    value = item.value
    return value.encode() if isinstance(value, str) else json.dumps(value).encode()


def render_error(result: JobResult) -> dict[str, Any] | None:
    error = result.error
    if error is None:
        if result.status == "cancelled":
            return {"code": "canceled", "message": "the job was canceled"}
        return None
    kind = str(error.get("type") or "error")
    node_id = error.get("node_id")
    if result.status == "cancelled" or kind == "Cancelled":
        code = "canceled"
    elif node_id is not None and kind in ("ExecutionFailed", "ExecutionInterrupted"):
        code = "node_execution_error"
    else:
        code = _snake(kind)
    traceback = error.get("traceback")
    if isinstance(traceback, list):
        traceback = "".join(str(line) for line in traceback)
    return {
        "code": code,
        "message": str(error.get("message") or kind),
        "node_id": None if node_id is None else str(node_id),
        "class_type": error.get("node_type") or error.get("class_type"),
        "traceback": traceback[-MAX_TRACEBACK:] if isinstance(traceback, str) else None,
    }


def render_metrics(result: JobResult | None) -> dict[str, int | None]:
    if result is None or not result.timings.started_at:
        return {"queue_ms": None, "execution_ms": None}
    timings = result.timings
    return {
        "queue_ms": max(0, int(timings.queue_seconds * 1000)),
        "execution_ms": max(0, int(timings.run_seconds * 1000)),
    }


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
