"""``GET /api/v2/jobs/{id}/events``: the job's live state as Server-Sent Events.

On connect: a ``status`` event (and the latest ``progress`` while it runs). Then: ``status`` on
every transition, ``progress`` at most ``PROGRESS_PER_SECOND`` times a second (the newest
snapshot wins), ``output`` for each output as soon as the worker stored it (the hub passes on
the farm's live channel; each output is sent once), ``preview`` with the newest preview image
(on connect too; the worker throttles them to 2 a second), and the terminal ``status`` last —
then the stream ends. A comment line every ``KEEPALIVE_SECONDS`` keeps proxies
from closing an idle stream. Frames carry no ``id`` (live push, not a log, as the contract says).

Each stream listens through the process's ``EventHub`` (one Redis subscription for all of them)
and re-reads the job's state every ``POLL_SECONDS`` (first after a random part of it, so
streams opened together do not poll together) and after a gap, so a missed message costs
at most that long. Streams per tenant and process are bounded: 429 ``too_many_streams``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter
from dataclasses import replace
from typing import Any

from aiohttp import web

from comfyfarm.gateway import jsonio
from comfyfarm.gateway.context import GATEWAY, Gateway, origin_of
from comfyfarm.gateway.errors import ApiError
from comfyfarm.gateway.events import CLOSE, GAP, OUTPUT, PREVIEW
from comfyfarm.gateway.job_records import JobRecord
from comfyfarm.gateway.job_state import FarmView, parse_live, read_views
from comfyfarm.gateway.job_view import TERMINAL, render_job, render_progress
from comfyfarm.gateway.jobs import owned_job
from comfyfarm.gateway.metrics import METRICS
from comfyfarm.producer.outcome import parse_meta, parse_progress
from comfyfarm.tasks.keyspace import preview_key
from comfyfarm.tasks.models import PROGRESS_STATE

PROGRESS_PER_SECOND = 2.0
POLL_SECONDS = 5.0
KEEPALIVE_SECONDS = 15.0
OPEN_STREAMS = web.AppKey("open_streams", Counter)


def routes() -> list[web.RouteDef]:
    return [web.get("/api/v2/jobs/{id}/events", job_events)]


async def job_events(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    record, _ = await owned_job(request, with_state=False)
    tenant = request["tenant"]
    open_streams = request.app[OPEN_STREAMS]
    if open_streams[tenant] >= gw.settings.max_streams:
        raise ApiError(
            429,
            "too_many_streams",
            f"{open_streams[tenant]} event streams are open (limit {gw.settings.max_streams}): "
            "close one, or poll GET /api/v2/jobs/{id}",
            headers={"Retry-After": str(gw.settings.retry_after_seconds)},
        )
    open_streams[tenant] += 1
    request.app[METRICS].open_streams.inc()
    try:
        # Counted before listening and released whatever happens after: a subscription that
        # fails (Redis down) must not keep a stream slot or the gauge up for ever.
        queue = await gw.hub.listen(record.job_id)
        try:
            response = web.StreamResponse(
                headers={
                    "Content-Type": "text/event-stream",
                    "Cache-Control": "no-cache",
                    "X-Accel-Buffering": "no",
                }
            )
            await response.prepare(request)
            stream = _Stream(gw, request, record, response)
            with contextlib.suppress(ConnectionResetError):
                await stream.run(queue)
            return response
        finally:
            await gw.hub.leave(record.job_id, queue)
    finally:
        request.app[METRICS].open_streams.dec()
        open_streams[tenant] -= 1
        if open_streams[tenant] <= 0:
            del open_streams[tenant]


class _Stream:
    """One client's stream: what it was last told, and the progress throttle."""

    def __init__(
        self, gw: Gateway, request: web.Request, record: JobRecord, response: web.StreamResponse
    ) -> None:
        self.gw = gw
        self.origin = origin_of(request)
        self.record = record
        self.response = response
        self.status: str | None = None
        self.position: int | None = None
        self.progress: dict[str, Any] | None = None  # last sent
        self.pending: dict[str, Any] | None = None  # newest not yet sent (throttled)
        self.sent_progress_at = float("-inf")
        self.sent_outputs: set[str] = set()  # asset ids of the outputs already sent
        self.preview: bytes | str | None = None  # the preview record last sent
        #: Output records the live channel carried: the worker lists them in Redis lazily
        #: (``worker.live_outputs``), so the state read right after may not have them yet.
        self.announced: list[bytes] = []

    async def run(self, queue: asyncio.Queue[bytes]) -> None:
        if await self._on_view(await self._read()):  # the snapshot, read after subscribing
            return
        await self._send_preview()  # the newest preview, if the job has one
        last_write = time.monotonic()
        polled = last_write - random.uniform(0, POLL_SECONDS)  # noqa: S311 - spreading polls
        while True:
            now = time.monotonic()
            wait = min(POLL_SECONDS - (now - polled), KEEPALIVE_SECONDS - (now - last_write))
            if self.pending is not None:
                wait = min(wait, self.sent_progress_at + 1 / PROGRESS_PER_SECOND - now)
            try:
                raw = await asyncio.wait_for(queue.get(), timeout=max(0.0, wait))
            except TimeoutError:
                raw = None
            if raw == CLOSE:
                return
            if raw is not None and raw.startswith(OUTPUT + b" "):
                self.announced.append(raw[len(OUTPUT) + 1 :])  # read with the state below
            wrote = await self._flush_progress()
            if raw == PREVIEW:
                wrote = await self._send_preview() or wrote
            elif raw not in (None, GAP) and not raw.startswith(OUTPUT) and self._is_progress(raw):
                wrote = await self._offer_progress(raw) or wrote
            elif raw is not None or time.monotonic() - polled >= POLL_SECONDS:
                polled = time.monotonic()
                if await self._on_view(await self._read()):
                    return
                wrote = True
            if wrote:
                last_write = time.monotonic()
            elif time.monotonic() - last_write >= KEEPALIVE_SECONDS:
                await self.response.write(b": keepalive\n\n")
                last_write = time.monotonic()

    async def _read(self) -> FarmView:
        [view] = await read_views(self.gw.client, self.gw.results, self.gw.prefix,
                                  [self.record.job_id])  # fmt: skip
        if view.result is not None or not self.announced:
            return view  # the result carries every output
        live = parse_live([json.dumps(o.to_dict()).encode() for o in view.live] + self.announced)
        return replace(view, live=live)

    @staticmethod
    def _is_progress(raw: bytes) -> bool:
        return b'"' + PROGRESS_STATE.encode() + b'"' in raw[:4096]

    async def _offer_progress(self, raw: bytes) -> bool:
        meta = parse_meta(raw)
        progress = parse_progress(meta.get("result")) if meta is not None else None
        if progress is None:
            return False
        if self.status not in ("running", "canceling"):
            return await self._on_view(await self._read())  # first progress: status changed too
        self.pending = render_progress(progress)
        return await self._flush_progress()

    async def _flush_progress(self) -> bool:
        due = self.sent_progress_at + 1 / PROGRESS_PER_SECOND
        if self.pending is None or time.monotonic() < due:
            return False
        payload, self.pending = self.pending, None
        if payload == self.progress:
            return False
        await self._send("progress", payload)
        self.progress = payload
        self.sent_progress_at = time.monotonic()
        return True

    async def _on_view(self, view: FarmView) -> bool:
        """Send what changed; True once the terminal status was sent (the stream ends)."""
        position = await self.gw.position(self.record, view)
        job = render_job(self.record, view, origin=self.origin, retention=self.gw.retention,
                         queue_position=position, links=self.gw.links)  # fmt: skip
        status = job["status"]  # ``expired`` past the retention, whatever the farm says
        if status in TERMINAL:
            await self.gw.register(self.record, view)
            self.pending = None
            await self._send_outputs(job["outputs"])
            await self._send("status", {"status": status, "queue_position": None})
            return True
        if status != self.status or position != self.position:  # queue_position moves too
            await self._send("status", {"status": status, "queue_position": position})
            self.status, self.position = status, position
        if job["outputs"]:  # stored while the job runs: each told once, as it appears
            await self.gw.register(self.record, view)
            await self._send_outputs(job["outputs"])
        if job["progress"] is not None and job["progress"] != self.progress:
            self.pending = job["progress"]
            await self._flush_progress()
        return False

    async def _send_preview(self) -> bool:
        """Send the job's newest preview image if it is new to this client."""
        raw = await self.gw.client.get(preview_key(self.gw.prefix, self.record.job_id))
        if raw is None or raw == self.preview:
            return False
        try:
            body = jsonio.loads(raw)
            payload = {k: str(body[k]) for k in ("node_id", "content_type", "data_base64")}
        except (ValueError, KeyError, TypeError):
            return False
        self.preview = raw
        await self._send("preview", payload)
        return True

    async def _send_outputs(self, outputs: list[dict[str, Any]]) -> None:
        for output in outputs:
            if output["id"] not in self.sent_outputs:
                await self._send("output", output)
                self.sent_outputs.add(output["id"])

    async def _send(self, event: str, data: dict[str, Any]) -> None:
        frame = b"event: " + event.encode() + b"\ndata: " + jsonio.dumps(data) + b"\n\n"
        await self.response.write(frame)
