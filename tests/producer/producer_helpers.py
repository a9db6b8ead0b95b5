"""Helpers for the producer tests: a sample prompt, readers of the raw queue contents, and the
states a worker would write (progress, results) without a worker."""

from __future__ import annotations

import base64
import json
from typing import Any

import redis

from comfyfarm.producer import Farm, Job
from comfyfarm.tasks.models import JobProgress, JobResult, OutputRecord, Timings
from comfyfarm.tasks.routing import queue_keys

PROMPT: dict[str, Any] = {
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
    "10": {"class_type": "LoadImage", "inputs": {"image": "placeholder.png"}},
    "9": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "x"}},
}


def queued_messages(
    client: redis.Redis, prefix: str, queue: str
) -> dict[int, list[dict[str, Any]]]:
    """Farm priority → the kombu envelopes waiting in that priority's list (oldest first)."""
    found = {}
    for priority, key in queue_keys(prefix, queue).items():
        raw = client.lrange(key, 0, -1)
        if raw:
            found[priority] = [json.loads(item) for item in reversed(raw)]
    return found


def all_messages(client: redis.Redis, prefix: str, queue: str) -> list[dict[str, Any]]:
    return [m for messages in queued_messages(client, prefix, queue).values() for m in messages]


def body_of(envelope: dict[str, Any]) -> Any:
    """The decoded Celery message body: [args, kwargs, embed]."""
    assert envelope["content-type"] == "application/json"
    assert envelope["properties"]["body_encoding"] == "base64"
    return json.loads(base64.b64decode(envelope["body"]))


def progress(job: Job, percent: float) -> JobProgress:
    return JobProgress(job_id=job.job_id, phase="running", node="3", node_type="KSampler",
                       value=percent / 5, max=20, percent=percent, nodes_done=1, nodes_total=4,
                       worker="gpu0")  # fmt: skip


def result(job: Job, status: str = "succeeded", error: dict[str, Any] | None = None) -> JobResult:
    outputs = [] if status != "succeeded" else [
        OutputRecord(node_id="9", kind="images", index=0, filename="x.png",
                     uri=f"file:///out/{job.job_id}/9_0_x.png", bytes=10, hash="blake3:" + "0" * 64,
                     mime="image/png")
    ]  # fmt: skip
    return JobResult(job_id=job.job_id, status=status, outputs=outputs, error=error,
                     timings=Timings.measure(enqueued_at=1.0, started_at=2.0, finished_at=3.0),
                     worker="gpu0", params={"seed": 1})  # fmt: skip


def write_state(farm: Farm, job: Job, state: str, meta: Any) -> None:
    """What a worker's update_state/return does: SET the meta and PUBLISH it."""
    farm.app.backend.store_result(job.job_id, meta, state)
