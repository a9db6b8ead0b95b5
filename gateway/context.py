"""Gateway: what every route needs — the farm (producer side), async Redis clients, the
submitter, the event hub — built once per application and closed with it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from comfyfarm.gateway.asset_refs import resolve_references
from comfyfarm.gateway.blob_refs import BlobRefs
from comfyfarm.gateway.connect import async_client
from comfyfarm.gateway.content_links import ContentLinks
from comfyfarm.gateway.errors import ApiError
from comfyfarm.gateway.events import EventHub
from comfyfarm.gateway.job_records import JobRecord
from comfyfarm.gateway.job_state import FarmView
from comfyfarm.gateway.job_view import render_job, v2_status
from comfyfarm.gateway.output_assets import register_outputs
from comfyfarm.gateway.queue_position import QueuePositions
from comfyfarm.gateway.schemas import SchemaCache
from comfyfarm.gateway.settings import GatewaySettings
from comfyfarm.gateway.submission import Submitter
from comfyfarm.producer import Farm
from comfyfarm.storage import open_store
from comfyfarm.storage.blobs import BlobStore, blob_key
from comfyfarm.tasks.models import InputFile


class Gateway:
    """One gateway process's connections and caches (no job state: that is in Redis)."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        farm_settings = settings.farm
        self.prefix = farm_settings.key_prefix
        self.retention = farm_settings.result_expires
        self.farm = Farm(farm_settings)
        self.client = async_client(farm_settings)
        same = farm_settings.result_backend == farm_settings.broker_url
        self.results = (
            self.client if same else async_client(farm_settings, url=farm_settings.result_backend)
        )
        self.store = open_store(farm_settings.storage_url, fsync=farm_settings.storage_fsync)
        self.blobs = BlobStore(self.store, max_bytes=settings.max_upload_bytes)
        self.links = ContentLinks(self.store, presign_seconds=settings.presign_seconds)
        self.refs = BlobRefs(self.client, self.prefix, self._delete_blob)
        self.hub = EventHub(self.results, self.prefix)
        self.positions = QueuePositions(self.client, self.prefix)
        self.schemas = SchemaCache(farm_settings)
        self.submitter = Submitter(
            self.farm,
            self.client,
            self.schemas,
            max_queue_depth=settings.max_queue_depth,
            retry_after=settings.retry_after_seconds,
        )

    async def render(
        self, request: web.Request, record: JobRecord, view: FarmView, *, position: bool = True
    ) -> dict[str, Any]:
        """The Job body; a finished job's outputs are registered as assets on the way.
        ``position``: find the queue position of a queued job (two round trips)."""
        await self.register(record, view)
        where = await self.position(record, view) if position else None
        return render_job(record, view, origin=origin_of(request), retention=self.retention,
                          queue_position=where, links=self.links)  # fmt: skip

    async def position(self, record: JobRecord, view: FarmView) -> int | None:
        if v2_status(view.status) != "queued":
            return None
        return await self.positions.position(record)

    async def register(self, record: JobRecord, view: FarmView) -> None:
        if view.result is not None:
            # Its inputs were fetched: the job holds them no more.
            await self.release_inputs(record.tenant, record.job_id, list(record.blobs))
        outputs = view.outputs
        if outputs:
            finished = view.result.timings.finished_at if view.result is not None else None
            await register_outputs(self.client, self.prefix, record.tenant, record.job_id,
                                   outputs, expires_at=record.created_at + self.retention,
                                   created_at=finished)  # fmt: skip

    async def resolve_assets(
        self, tenant: str, workflow: dict[str, Any]
    ) -> tuple[dict[str, Any], list[InputFile], list[str]]:
        return await resolve_references(self, tenant, workflow)

    async def hold_inputs(self, tenant: str, job_id: str, digests: list[str]) -> None:
        """The job holds the blobs it takes as input until it finishes (``blob_refs``);
        ApiError 422 ``missing_asset`` if one was collected before the hold."""
        until = time.time() + self.retention
        for digest in digests:
            await self.refs.hold(tenant, digest, f"job:{job_id}", until)
        for digest in digests:
            if await asyncio.to_thread(self.blobs.find, tenant, digest) is None:
                await self.release_inputs(tenant, job_id, digests)
                raise ApiError(
                    422,
                    "missing_asset",
                    f"the bytes of input {digest} were deleted: upload them again",
                )

    async def release_inputs(self, tenant: str, job_id: str, digests: list[str]) -> None:
        for digest in digests:
            await self.refs.release(tenant, digest, f"job:{job_id}")

    def _delete_blob(self, tenant: str, digest: str) -> None:
        self.store.delete(blob_key(tenant, digest))

    async def close(self) -> None:
        await self.hub.close()
        await self.client.aclose()
        if self.results is not self.client:
            await self.results.aclose()
        self.farm.close()


def origin_of(request: web.Request) -> str:
    """``scheme://host[:port]`` the client used (for absolute content URLs)."""
    return str(request.url.origin())


GATEWAY = web.AppKey("gateway", Gateway)
