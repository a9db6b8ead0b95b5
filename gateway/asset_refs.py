"""Asset references inside a submitted workflow, resolved before the job is enqueued.

A ``core/ASSET`` object (``{"__type": "core/ASSET", "info": {"id": …}}``) in place of an input
value names one of the caller's assets; the worker must upload those bytes into its own ComfyUI
(per-job subfolder) and put the uploaded name there. Each reference becomes an ``InputFile`` whose
``source`` is the asset's storage URI, and the value in the prompt becomes its file name.

Until the asset store is present every reference is unknown: ``422 missing_asset`` naming the
node and input.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from comfyfarm.gateway.errors import ApiError
from comfyfarm.tasks.models import InputFile

if TYPE_CHECKING:
    from comfyfarm.gateway.context import Gateway

ASSET_TYPE = "core/ASSET"


def find_references(workflow: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """(node id, input name, the reference object) of every ``core/ASSET`` value."""
    found = []
    for node_id, node in workflow.items():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        if not isinstance(inputs, dict):
            continue
        for name, value in inputs.items():
            if isinstance(value, dict) and value.get("__type") == ASSET_TYPE:
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
) -> tuple[dict[str, Any], list[InputFile]]:
    """The prompt with references replaced by file names, and the InputFiles to upload."""
    references = find_references(workflow)
    if references:
        node_id, name, _ = references[0]
        raise missing_asset(node_id, name, "no asset with this id belongs to the caller")
    return workflow, []
