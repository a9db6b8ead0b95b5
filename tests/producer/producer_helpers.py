"""Helpers for the producer tests: a sample prompt and readers of the raw queue contents."""

from __future__ import annotations

import base64
import json
from typing import Any

import redis

from tasks.routing import queue_keys

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
