"""EventHub: ONE Redis pub/sub connection per gateway process, fanned out to every event stream.

Every state change of a job (PROGRESS included) is published by Celery on the job's result
channel (``tasks.keyspace.celery_result_key``). A stream asks the hub for a queue on its job: the
first listener of a job subscribes its channel, the last one leaving unsubscribes it, so a
thousand open streams cost one connection and one subscription per distinct job — as
``Farm.as_completed`` follows any number of jobs over one subscription.

A reader task moves each message into the queues of that job's listeners (bounded: a slow client
loses the oldest frames, never the gateway's memory; the stream re-reads the state after a
gap). When Redis drops the connection the reader reconnects and re-subscribes every channel;
streams also poll the job's state every few seconds, so a missed message costs that long.

Outputs stored while a job runs, and new preview images, are announced on the farm's single
live channel (``worker.live_outputs``): the hub subscribes to it with its first listener and
keeps it; each message names its job, whose listeners get ``OUTPUT`` followed by the output's
record ("re-read, with this new output": the worker lists its outputs in Redis only lazily) or
``PREVIEW`` ("read the newest preview") — one channel for every job, however many. (Workers
publish it on the broker's Redis: where the result backend is another server, streams find new
outputs by their poll instead, and send no previews.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import redis
import redis.asyncio as aioredis

from comfyfarm.tasks.keyspace import celery_result_key, live_channel

log = logging.getLogger(__name__)

QUEUE_SIZE = 32
RECONNECT_PAUSE = 1.0
GAP = b""  # put in a queue whose frames were dropped: "re-read the state"
CLOSE = b"close"  # the gateway is shutting down: end the stream
OUTPUT = b"output"  # the job stored an output: re-read its state (+ b" " + the record's JSON)
PREVIEW = b"preview"  # the job has a new preview image: read it
_LIVE = ""  # the job id under which the outputs channel is filed in ``_channels``


class EventHub:
    """Job id → the queues of its open streams, fed by one pub/sub connection."""

    def __init__(self, results: aioredis.Redis, prefix: str) -> None:
        self._results = results
        self._prefix = prefix
        self._live_channel = live_channel(prefix)
        self._listeners: dict[str, set[asyncio.Queue[bytes]]] = {}
        self._channels: dict[str, str] = {}  # channel → job id
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    @property
    def subscriptions(self) -> int:
        """Job channels subscribed (the outputs channel not counted)."""
        return len(self._channels) - (self._live_channel in self._channels)

    @property
    def listeners(self) -> int:
        return sum(len(queues) for queues in self._listeners.values())

    async def listen(self, job_id: str) -> asyncio.Queue[bytes]:
        """A queue receiving the raw Celery meta of every state change of ``job_id``."""
        queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=QUEUE_SIZE)
        async with self._lock:
            queues = self._listeners.setdefault(job_id, set())
            queues.add(queue)
            if len(queues) == 1:
                channel = celery_result_key(self._prefix, job_id)
                self._channels[channel] = job_id
                try:
                    pubsub = await self._ensure_pubsub()
                    if self._live_channel not in self._channels:
                        self._channels[self._live_channel] = _LIVE
                        try:
                            await pubsub.subscribe(channel, self._live_channel)
                        except BaseException:
                            del self._channels[self._live_channel]
                            raise
                    else:
                        await pubsub.subscribe(channel)
                except BaseException:
                    # Not subscribed: forget the listener, or the next one for this job would
                    # count on a subscription that does not exist.
                    del self._listeners[job_id], self._channels[channel]
                    raise
            if self._reader is None or self._reader.done():
                self._reader = asyncio.create_task(self._read(), name="gateway-event-hub")
        return queue

    async def leave(self, job_id: str, queue: asyncio.Queue[bytes]) -> None:
        async with self._lock:
            queues = self._listeners.get(job_id)
            if queues is None:
                return
            queues.discard(queue)
            if queues:
                return
            del self._listeners[job_id]
            channel = celery_result_key(self._prefix, job_id)
            self._channels.pop(channel, None)
            if self._pubsub is not None:
                with contextlib.suppress(redis.RedisError, OSError):
                    await self._pubsub.unsubscribe(channel)

    def end_streams(self) -> None:
        """Tell every open stream to end (the gateway is shutting down)."""
        for queues in self._listeners.values():
            for queue in queues:
                with contextlib.suppress(asyncio.QueueEmpty):
                    if queue.full():
                        queue.get_nowait()
                queue.put_nowait(CLOSE)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._pubsub is not None:
            with contextlib.suppress(redis.RedisError, OSError):
                await self._pubsub.aclose()

    async def _ensure_pubsub(self) -> Any:
        if self._pubsub is None:
            self._pubsub = self._results.pubsub(ignore_subscribe_messages=True)
        return self._pubsub

    async def _read(self) -> None:
        while True:
            if not self._channels:
                await asyncio.sleep(0.5)  # nothing subscribed: get_message would refuse
                if not self._channels:
                    continue
            if self._pubsub is None:
                await self._reconnect()
                continue
            try:
                message = await self._pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=1.0
                )
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                log.warning("event hub lost Redis (%s); re-subscribing", exc)
                await self._reconnect()
                continue
            if message and message.get("type") == "message":
                self._deliver(message)

    def _deliver(self, message: dict[str, Any]) -> None:
        channel = message.get("channel")
        if isinstance(channel, bytes):
            channel = channel.decode()
        job_id = self._channels.get(str(channel))
        data = message.get("data")
        if job_id is None or not isinstance(data, bytes | str):
            return
        payload = data.encode() if isinstance(data, str) else data
        if job_id == _LIVE:
            job_id, payload = _live_message(payload)
            if job_id is None:
                return
        for queue in self._listeners.get(job_id, ()):
            if queue.full():  # a slow client: drop its oldest, tell it to re-read
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                queue.put_nowait(GAP)
            queue.put_nowait(payload)

    async def _reconnect(self) -> None:
        old, self._pubsub = self._pubsub, None
        if old is not None:
            with contextlib.suppress(Exception):
                await old.aclose()
        await asyncio.sleep(RECONNECT_PAUSE)
        async with self._lock:
            try:
                pubsub = await self._ensure_pubsub()
                if self._channels:
                    await pubsub.subscribe(*self._channels)
            except (redis.RedisError, OSError):
                self._pubsub = None
                return
        for queues in self._listeners.values():  # anything may have been missed
            for queue in queues:
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(GAP)


def _live_message(payload: bytes) -> tuple[str | None, bytes]:
    """The job a live-channel message names (None: not one of ours) and what to tell its
    streams: ``PREVIEW``, or ``OUTPUT`` with the record the message carries."""
    try:
        body = json.loads(payload)
        job_id = body.get("job_id")
    except (ValueError, AttributeError):
        return None, OUTPUT
    if not isinstance(job_id, str):
        return None, OUTPUT
    if body.get("preview"):
        return job_id, PREVIEW
    output = body.get("output")
    if not isinstance(output, dict):
        return job_id, OUTPUT
    return job_id, OUTPUT + b" " + json.dumps(output).encode()
