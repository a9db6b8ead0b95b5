"""What a ComfyUI can run: its node schemas (``/object_info``) and its model lists, read once.

The one place that fetches them, through ``ComfyClient`` (timeouts, route prefix, one retry of a
stale connection, typed errors). Used by the worker (``SchemaPublisher`` publishes them for
producers) and by ``workflows.SchemaSource.from_url`` (validating against a live ComfyUI).

Node schemas are required: failing to read them raises the client's ``ComfyError``. Model lists
are a bonus (a ComfyUI without ``/models`` still runs jobs): if the folder list cannot be read the
lists are empty; a folder whose list cannot be read is left out and named in ``missing``, so a
caller that must not publish partial lists can tell.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from comfyfarm.comfy.client import ComfyClient
from comfyfarm.comfy.errors import ComfyError


@dataclass(frozen=True)
class ComfySchemas:
    """One ComfyUI's ``/object_info`` and model lists (folder → file names)."""

    object_info: dict[str, Any]
    models: dict[str, list[str]] = field(default_factory=dict)
    missing: tuple[str, ...] = ()  # model folders whose list could not be read


def fetch_schemas(client: ComfyClient, *, include_models: bool = True) -> ComfySchemas:
    """Read ``/object_info`` and (unless ``include_models`` is False) every model list.

    Raises ComfyError when the node schemas cannot be read.
    """
    object_info = client.object_info()
    if not include_models:
        return ComfySchemas(object_info)
    try:
        folders = client.model_folders()
    except ComfyError:
        return ComfySchemas(object_info)
    models: dict[str, list[str]] = {}
    missing: list[str] = []
    for folder in folders:
        try:
            models[folder] = client.list_models(folder)
        except ComfyError:
            missing.append(folder)
    return ComfySchemas(object_info, models, tuple(missing))
