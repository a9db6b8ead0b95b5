"""Where a producer gets node schemas to validate against, in order of preference.

1. ``--object-info FILE`` (a saved ``/object_info``), 2. ``--comfy-url URL`` (a live ComfyUI),
3. the schemas the farm's workers published in Redis (``tasks.schemas``), so a producer that cannot
reach any ComfyUI still validates every job before it is queued — against the newest one, or the
one of the worker the jobs are sent to (``comfyfarm.producer.placement`` checks them all).
"""

from __future__ import annotations

from comfyfarm.tasks.connect import redis_client
from comfyfarm.tasks.schemas import PublishedSchema, load_schemas
from comfyfarm.tasks.settings import Settings
from comfyfarm.workflows import SchemaSource


class NoSchemaSource(Exception):
    """Raised when no schema source is given and no worker has published one."""


def find_schema(
    settings: Settings,
    *,
    object_info: str | None = None,
    comfy_url: str | None = None,
    worker: str | None = None,
) -> SchemaSource:
    """The schema source to validate against (``worker``: prefer that worker's published one)."""
    if object_info:
        return SchemaSource.from_file(object_info)
    if comfy_url:
        return SchemaSource.from_url(comfy_url)
    published = published_schemas(settings)
    chosen = next((p for p in published if p.worker == worker), published[0])
    return SchemaSource.from_object_info(chosen.object_info, models=chosen.models)


def published_schemas(settings: Settings) -> list[PublishedSchema]:
    """Every schema the farm's workers published, newest first; NoSchemaSource when none."""
    client = redis_client(settings, decode_responses=False)
    try:
        published = load_schemas(client, settings.key_prefix)
    finally:
        client.close()
    if not published:
        raise NoSchemaSource(
            "no node schemas to validate against: no worker has published its ComfyUI's schemas "
            "yet; start a worker, or pass --comfy-url URL or --object-info FILE (or --no-validate)"
        )
    return published
