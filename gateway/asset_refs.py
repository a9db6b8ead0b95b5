"""Asset references inside a submitted workflow, resolved before the job is enqueued.

Two forms name one of the caller's uploaded assets:

- a ``core/ASSET`` object in place of an input value
  (``{"__type": "core/ASSET", "info": {"id": …}}``; ``info.id`` is authoritative);
- a plain file name, as ComfyUI users write it (``"image": "photo.png"``), equal to the
  ``file_path`` of an asset the caller uploaded (the newest such asset wins).

Each becomes an ``InputFile`` whose ``source`` is the blob's storage URI: the worker uploads
those bytes into its own ComfyUI (per-job subfolder) and puts the uploaded name in the input. An
object reference that is malformed, unknown or another tenant's fails the submission with
``422 missing_asset`` naming the node and input; a plain name that is no asset is left alone
(it may be a file the ComfyUI has, which validation then checks).
"""

from __future__ import annotations

import asyncio
import copy
import re
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from comfyfarm.gateway.errors import ApiError
from comfyfarm.storage.asset_records import is_asset_id
from comfyfarm.tasks.models import InputFile

if TYPE_CHECKING:
    from comfyfarm.gateway.context import Gateway

ASSET_TYPE = "core/ASSET"
# A value that could be an uploaded file's name: no spaces, an extension, not too long.
_FILE_NAME = re.compile(r"[^\s/\\]{1,200}\.[A-Za-z0-9]{1,8}")
MAX_REFERENCES = 256


def find_references(workflow: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """(node id, input name, value) of every ``core/ASSET`` object and file-name-like string."""
    found: list[tuple[str, str, Any]] = []
    for node_id, node in workflow.items():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        if not isinstance(inputs, dict):
            continue
        for name, value in inputs.items():
            if isinstance(value, dict) and value.get("__type") == ASSET_TYPE:
                found.append((str(node_id), str(name), value))
            elif isinstance(value, str) and _FILE_NAME.fullmatch(value):
                found.append((str(node_id), str(name), value))
    return found


def missing_asset(node_id: str, input_name: str, reason: str) -> ApiError:
    return ApiError(
        422,
        "missing_asset",
        f"node {node_id} input {input_name}: {reason}",
        details={"node_errors": {node_id: [{"field": input_name, "reason": "missing_asset",
                                             "message": reason}]}},
    )  # fmt: skip


async def resolve_references(
    gateway: Gateway, tenant: str, workflow: dict[str, Any]
) -> tuple[dict[str, Any], list[InputFile], list[str]]:
    """The prompt with references replaced by file names, the InputFiles to upload, and the
    digests of their blobs (the job holds them: ``blob_refs``)."""
    from comfyfarm.gateway.asset_upload import name_key

    references = find_references(workflow)
    if not references:
        return workflow, [], []
    if len(references) > MAX_REFERENCES:
        raise ApiError(422, "invalid_workflow", f"more than {MAX_REFERENCES} asset references")
    names = [value for _, _, value in references if isinstance(value, str)]
    by_name: dict[str, str] = {}
    if names:
        ids = await gateway.client.mget([name_key(gateway.prefix, tenant, n) for n in names])
        by_name = {n: _text(i) for n, i in zip(names, ids, strict=True) if i is not None}
    prompt = copy.deepcopy(workflow)
    inputs: list[InputFile] = []
    digests: list[str] = []
    for node_id, input_name, value in references:
        asset_id: str | None
        if isinstance(value, str):
            asset_id = by_name.get(value)
            if asset_id is None:
                continue  # not an upload of the caller: maybe a file the ComfyUI has
        else:
            info = value.get("info")
            asset_id = info.get("id") if isinstance(info, dict) else None
            if not is_asset_id(asset_id):
                raise missing_asset(node_id, input_name, "info.id must be an asset UUID")
        assert asset_id is not None
        record = await asyncio.to_thread(gateway.blobs.get_asset, tenant, asset_id)
        if record is None:
            if isinstance(value, str):
                continue
            raise missing_asset(node_id, input_name, "no asset with this id belongs to the caller")
        filename = _safe_name(record.name, record.id)
        prompt[node_id]["inputs"][input_name] = filename
        blob = gateway.blobs.blob_of(record)
        inputs.append(InputFile(node_id=node_id, input_name=input_name,
                                source=gateway.blobs.uri(blob), filename=filename))  # fmt: skip
        digests.append(record.digest)
    return prompt, inputs, list(dict.fromkeys(digests))


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _safe_name(name: str, asset_id: str) -> str:
    base = PurePosixPath(name.replace("\\", "/")).name
    if not base or base.startswith(".") or len(base) > 200:
        return f"{asset_id}.bin"
    return base
