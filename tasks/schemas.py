"""Node schemas published by workers, so producers can validate without reaching a ComfyUI.

A worker stores what its ComfyUI serves (``/object_info`` and the ``/models/{folder}`` lists)
under ``<prefix>schema:<worker>`` when it starts and whenever ComfyUI comes back. Producers read
them to check a workflow before it is queued: node types, inputs, ranges and model files. The
body is zlib-compressed JSON (a full ``/object_info`` is ~700 KB of JSON, ~60 KB compressed).
"""

from __future__ import annotations

import json
import time
import zlib
from dataclasses import dataclass
from typing import Any

import redis

from comfyfarm.tasks.keyspace import schema_key

SCHEMA_TTL = 7 * 24 * 3600


@dataclass(frozen=True)
class PublishedSchema:
    """What one worker's ComfyUI serves, as published by that worker."""

    worker: str
    comfy_url: str
    object_info: dict[str, Any]
    models: dict[str, list[str]]
    published_at: float


def publish_schema(
    client: redis.Redis,
    prefix: str,
    worker: str,
    *,
    comfy_url: str,
    object_info: dict[str, Any],
    models: dict[str, list[str]],
    ttl: int = SCHEMA_TTL,
) -> None:
    body = {
        "worker": worker,
        "comfy_url": comfy_url,
        "object_info": object_info,
        "models": models,
        "published_at": time.time(),
    }
    client.set(schema_key(prefix, worker), zlib.compress(json.dumps(body).encode()), ex=ttl)


def load_schemas(client: redis.Redis, prefix: str) -> list[PublishedSchema]:
    """Every published schema, newest first. Unreadable entries are skipped.

    ``client`` must return bytes (``decode_responses=False``): the bodies are compressed, and a
    decoding client (``comfyfarm.tasks.connect.redis_client``) fails on them before we see them.
    """
    found: list[PublishedSchema] = []
    for key in client.scan_iter(match=schema_key(prefix, "*"), count=500):
        raw = client.get(key)
        if not isinstance(raw, bytes):
            continue
        try:
            body = json.loads(zlib.decompress(raw))
            found.append(
                PublishedSchema(
                    worker=str(body["worker"]),
                    comfy_url=str(body["comfy_url"]),
                    object_info=dict(body["object_info"]),
                    models={str(k): list(v) for k, v in dict(body["models"]).items()},
                    published_at=float(body["published_at"]),
                )
            )
        except (ValueError, KeyError, TypeError, zlib.error):
            continue
    return sorted(found, key=lambda schema: schema.published_at, reverse=True)
