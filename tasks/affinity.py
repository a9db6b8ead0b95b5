"""Which checkpoints a prompt loads, and so which model queue its job goes to (affinity).

Loading a checkpoint costs seconds (tens of seconds for large models); a job run where its
checkpoint is already loaded skips that. With ``COMFYFARM_AFFINITY`` producers send a job that
loads a checkpoint to that checkpoint's queue (``tasks.routing.model_queue``) instead of the
shared queue, and workers consume the queues of the checkpoints they loaded last before any
other (``comfyfarm.worker.affinity`` explains the order and why no job starves).

A prompt's checkpoints are the string ``ckpt_name`` inputs of its nodes (CheckpointLoaderSimple,
CheckpointLoader, ImageOnlyCheckpointLoader, ... all name it so), in node id order; a value that
is a link, or a URL (fetched and renamed by the worker), is not a checkpoint name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from comfyfarm.tasks.routing import model_queue

CHECKPOINT_INPUT = "ckpt_name"


def checkpoints(prompt: Mapping[str, Any]) -> list[str]:
    """The checkpoint names ``prompt`` loads, without repeats, in node id order."""
    names: list[str] = []
    for node_id in sorted(prompt, key=_node_order):
        node = prompt[node_id]
        inputs = node.get("inputs") if isinstance(node, Mapping) else None
        value = inputs.get(CHECKPOINT_INPUT) if isinstance(inputs, Mapping) else None
        if isinstance(value, str) and value and "://" not in value and value not in names:
            names.append(value)
    return names


def affinity_queue(prompt: Mapping[str, Any]) -> str | None:
    """The model queue of ``prompt``'s first checkpoint, or None when it loads none."""
    names = checkpoints(prompt)
    return model_queue(names[0]) if names else None


def _node_order(node_id: str) -> tuple[int, str]:
    return (int(node_id), "") if node_id.isdigit() else (1 << 62, node_id)
