"""Live outputs and previews: each output is announced the moment it is stored, before the
job's result, and the newest preview image ComfyUI sends is kept while the job runs.

A job's outputs are otherwise known only from its result, written when the last one is stored;
the API v2 gateway shows ``outputs`` while the job runs and sends an ``output`` event per
committed output. So the runner calls ``JobContext.on_output`` after each store write, and the
worker (``deps.job_context``) wires it to an ``OutputAnnouncer``, which publishes the record at
once on the farm's one live channel (``live_channel``; followed by every gateway process over
its single subscription, whose event streams take the record from the message) and appends it
to the job's list (``tasks.keyspace.job_outputs_key``, TTL = the result retention; read by a
late reader while the job runs) lazily: once an output has waited ``LIST_AFTER_SECONDS``, or
never, when the run ends first (``JobContext.on_outputs_end``: the result, written next, lists
them all). A job whose outputs are stored in its last second costs one PUBLISH per output; a
longer collection adds an RPUSH per second of it and one EXPIRE.

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
import threading
import time

import redis

from comfyfarm.comfy.events import PreviewImage
from comfyfarm.tasks.keyspace import job_outputs_key, live_channel, preview_key
from comfyfarm.tasks.models import OutputRecord
from comfyfarm.tasks.settings import Settings

log = logging.getLogger(__name__)


#: How long an announced output may wait before it is written to the job's list.
LIST_AFTER_SECONDS = 1.0


class OutputAnnouncer:
    """Announces each output of one run of one job at once and lists it lazily.

    The ``PUBLISH`` goes out with every output: live followers (the gateway's event streams)
    are told at once, the record in the message. The list (``RPUSH``, ``EXPIRE`` with the first
    write of the run) only serves a reader that comes late while the job still runs, and once
    the result is written it carries every output: so records wait here until one of them has
    waited ``list_after`` seconds (a timer, or the next output, writes them all), and ``close``
    (the run's outputs are final; its result is written next) drops what still waits. A job
    whose outputs are stored within ``list_after`` of its end never writes the list: its one
    output costs one command, not three.

    What a late reader may miss: an output that is neither in the list nor in the result for
    at most ``list_after`` (plus a Redis round trip) while the job runs, and the milliseconds
    between ``close`` and the result's write. A redelivered or retried run announces again:
    the outputs of a try that fails are dropped with it (its stored files are removed too).
    """

    def __init__(
        self,
        client: redis.Redis,
        settings: Settings,
        job_id: str,
        *,
        list_after: float = LIST_AFTER_SECONDS,
    ) -> None:
        self._client = client
        self._settings = settings
        self._job_id = job_id
        self._list_after = list_after
        self._expiring = False  # the list has its TTL
        self._lock = threading.Lock()  # the timer's thread writes the list too
        self._waiting: list[str] = []  # records announced, not yet listed
        self._first_waited_at = 0.0
        self._timer: threading.Timer | None = None
        self._closed = False

    def __call__(self, record: OutputRecord) -> None:
        self.offer(record)

    def offer(self, record: OutputRecord) -> bool:
        """Announce ``record`` now (listing what waited long enough with it); False if Redis
        failed (logged: the record waits to be listed, the result will carry it)."""
        body = record.to_dict()
        with self._lock:
            now = time.monotonic()
            if not self._waiting:
                self._first_waited_at = now
            if not self._closed:  # else only announced: the result is being written
                self._waiting.append(json.dumps(body))
            due = bool(self._waiting) and now - self._first_waited_at >= self._list_after
            try:
                with self._client.pipeline(transaction=False) as pipe:
                    if due:
                        self._queue_list_write(pipe)
                    pipe.publish(live_channel(self._settings.key_prefix),
                                 json.dumps({"job_id": self._job_id, "output": body}))  # fmt: skip
                    pipe.execute()
            except (redis.RedisError, OSError) as exc:
                log.warning("could not announce an output of job %s (%s); its result will",
                            self._job_id, exc)  # fmt: skip
                self._expiring = False  # the list may exist without its TTL
                self._arm(now)
                return False
            if due:
                self._listed()
            else:
                self._arm(now)
            return True

    def close(self) -> None:
        """The run's outputs are final (its result, written next, carries them): drop what
        waits to be listed, and list nothing more."""
        with self._lock:
            self._closed = True
            self._waiting.clear()
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def _queue_list_write(self, pipe: redis.client.Pipeline) -> None:
        key = job_outputs_key(self._settings.key_prefix, self._job_id)
        pipe.rpush(key, *self._waiting)
        if not self._expiring:
            pipe.expire(key, max(1, int(self._settings.result_expires)))

    def _listed(self) -> None:
        self._waiting.clear()
        self._expiring = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self, now: float) -> None:
        """Start the timer that lists the waiting records, unless it runs already."""
        if self._timer is not None or self._closed or not self._waiting:
            return
        delay = max(0.0, self._first_waited_at + self._list_after - now)
        self._timer = threading.Timer(delay, self._list_waiting)
        self._timer.daemon = True
        self._timer.start()

    def _list_waiting(self) -> None:
        with self._lock:
            if self._timer is not threading.current_thread():
                return  # cancelled while it waited for the lock: the records went another way
            self._timer = None
            if self._closed or not self._waiting:
                return
            try:
                with self._client.pipeline(transaction=False) as pipe:
                    self._queue_list_write(pipe)
                    pipe.execute()
            except (redis.RedisError, OSError) as exc:
                log.warning("could not list the outputs of job %s (%s); trying again",
                            self._job_id, exc)  # fmt: skip
                self._expiring = False
                self._first_waited_at = time.monotonic()  # the next try in list_after
                self._arm(self._first_waited_at)
                return
            self._listed()


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
