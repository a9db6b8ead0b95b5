"""Live outputs and previews: each output is announced the moment it is stored, before the
job's result, and the newest preview image ComfyUI sends is kept while the job runs.

A job's outputs are otherwise known only from its result, written when the last one is stored;
the API v2 gateway shows ``outputs`` while the job runs and sends an ``output`` event per
committed output. So the runner calls ``JobContext.on_output`` after each store write, and the
worker (``deps.job_context``) wires it to an ``OutputAnnouncer``: one pipeline per output that
appends the record to the job's list (``tasks.keyspace.job_outputs_key``, TTL = the result
retention; read by a late reader) and publishes it on the farm's one live channel
(``live_channel``; followed by every gateway process over its single subscription). The TTL is
set with the first output a run announces, not again with every one: a job of n outputs costs
Redis 2n + 1 commands instead of 3n (a redelivered run sets it once more, from its own end).

Previews (``JobContext.on_preview``; latent previews of a sampler, typically JPEG) go through
``PreviewSender``: at most ``PREVIEWS_PER_SECOND`` a second, at most ``MAX_PREVIEW_BYTES``
each, JPEG/PNG/WEBP only; the newest replaces the last in ``preview_key`` (TTL
``PREVIEW_TTL``) and a ``{job_id, preview: true}`` message on the live channel tells the
gateways. Frames in between are dropped, never queued: a preview is only worth its recency.

Best effort: a Redis error is logged and the job goes on (the result still carries every
output). A redelivered job that collects again appends its outputs again; readers deduplicate
by (node, kind, index).
"""

from __future__ import annotations

import base64
import json
import logging
import time

import redis

from comfyfarm.comfy.events import PreviewImage
from comfyfarm.tasks.keyspace import job_outputs_key, live_channel, preview_key
from comfyfarm.tasks.models import OutputRecord
from comfyfarm.tasks.settings import Settings

log = logging.getLogger(__name__)


def publish_output(
    client: redis.Redis,
    settings: Settings,
    job_id: str,
    record: OutputRecord,
    *,
    expire: bool = True,
) -> bool:
    """Append ``record`` to the job's live outputs (setting their TTL if ``expire``) and
    announce it; False if Redis failed (never raises for Redis)."""
    prefix = settings.key_prefix
    body = record.to_dict()
    key = job_outputs_key(prefix, job_id)
    try:
        with client.pipeline(transaction=False) as pipe:
            pipe.rpush(key, json.dumps(body))
            if expire:
                pipe.expire(key, max(1, int(settings.result_expires)))
            pipe.publish(live_channel(prefix), json.dumps({"job_id": job_id, "output": body}))
            pipe.execute()
    except (redis.RedisError, OSError) as exc:
        log.warning("could not announce an output of job %s (%s); its result will", job_id, exc)
        return False
    return True


class OutputAnnouncer:
    """``publish_output`` for one run of one job: the TTL goes with the first output that was
    announced, and again after a failed announcement (its list may exist without one)."""

    def __init__(self, client: redis.Redis, settings: Settings, job_id: str) -> None:
        self._client = client
        self._settings = settings
        self._job_id = job_id
        self._expiring = False  # the list has its TTL

    def __call__(self, record: OutputRecord) -> None:
        self._expiring = publish_output(
            self._client, self._settings, self._job_id, record, expire=not self._expiring
        )


PREVIEWS_PER_SECOND = 2.0
MAX_PREVIEW_BYTES = 512 * 1024
PREVIEW_TTL = 3600
_PREVIEW_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}


class PreviewSender:
    """Keeps the newest preview of one job in Redis, throttled (see the module docstring)."""

    def __init__(self, client: redis.Redis, settings: Settings, job_id: str) -> None:
        self._client = client
        self._prefix = settings.key_prefix
        self._job_id = job_id
        self._sent_at = float("-inf")

    def offer(self, image: PreviewImage) -> None:
        content_type = _PREVIEW_TYPES.get(image.image_format)
        if content_type is None or len(image.data) > MAX_PREVIEW_BYTES:
            return
        now = time.monotonic()
        if now - self._sent_at < 1 / PREVIEWS_PER_SECOND:
            return
        self._sent_at = now
        body = {
            "node_id": image.node_id or "",
            "content_type": content_type,
            "data_base64": base64.b64encode(image.data).decode(),
        }
        try:
            with self._client.pipeline(transaction=False) as pipe:
                pipe.set(preview_key(self._prefix, self._job_id), json.dumps(body),
                         ex=PREVIEW_TTL)  # fmt: skip
                pipe.publish(live_channel(self._prefix),
                             json.dumps({"job_id": self._job_id, "preview": True}))  # fmt: skip
                pipe.execute()
        except (redis.RedisError, OSError) as exc:
            log.info("could not keep a preview of job %s (%s)", self._job_id, exc)
