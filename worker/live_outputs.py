"""Live outputs: each output is announced the moment it is stored, before the job's result.

A job's outputs are otherwise known only from its result, written when the last one is stored;
the API v2 gateway shows ``outputs`` while the job runs and sends an ``output`` event per
committed output. So the runner calls ``JobContext.on_output`` after each store write, and the
worker (``deps.job_context``) wires it here: one pipeline that appends the record to the job's
list (``tasks.keyspace.job_outputs_key``, TTL = the result retention; read by a late reader)
and publishes it on the farm's one outputs channel (``outputs_channel``; followed by every
gateway process over its single subscription).

Best effort: a Redis error is logged and the job goes on (the result still carries every
output). A redelivered job that collects again appends its outputs again; readers deduplicate
by (node, kind, index).
"""

from __future__ import annotations

import json
import logging

import redis

from comfyfarm.tasks.keyspace import job_outputs_key, outputs_channel
from comfyfarm.tasks.models import OutputRecord
from comfyfarm.tasks.settings import Settings

log = logging.getLogger(__name__)


def publish_output(
    client: redis.Redis, settings: Settings, job_id: str, record: OutputRecord
) -> None:
    """Append ``record`` to the job's live outputs and announce it (never raises for Redis)."""
    prefix = settings.key_prefix
    body = record.to_dict()
    key = job_outputs_key(prefix, job_id)
    try:
        with client.pipeline(transaction=False) as pipe:
            pipe.rpush(key, json.dumps(body))
            pipe.expire(key, max(1, int(settings.result_expires)))
            pipe.publish(outputs_channel(prefix), json.dumps({"job_id": job_id, "output": body}))
            pipe.execute()
    except (redis.RedisError, OSError) as exc:
        log.warning("could not announce an output of job %s (%s); its result will", job_id, exc)
