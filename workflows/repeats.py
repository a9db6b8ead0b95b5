"""Repeated prompts: jobs whose API prompts are identical, which ComfyUI serves from its cache.

ComfyUI caches every node's outputs by its inputs: the second of two identical prompts executes
nothing and returns the files of the first (``execution_cached`` lists every node). ``--count 4``
of a workflow with a fixed seed therefore renders once and reports the same image four times.
``repeat_warning`` says so before anything is queued and names the fix: a fresh seed per job
(``--param seed=random``, or ``--set <node>.seed=random`` when the workflow has no seed
parameter).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

SEED_INPUTS = ("seed", "noise_seed")


def _fingerprint(prompt: Mapping[str, Any]) -> str:
    return json.dumps(prompt, sort_keys=True, separators=(",", ":"), default=str)


def repeated_jobs(prompts: Sequence[Mapping[str, Any]]) -> int:
    """How many prompts repeat an earlier one exactly (0 when every prompt differs)."""
    seen: set[str] = set()
    repeats = 0
    for prompt in prompts:
        key = _fingerprint(prompt)
        repeats += key in seen
        seen.add(key)
    return repeats


def seed_targets(prompt: Mapping[str, Any]) -> list[str]:
    """``node.input`` of every literal seed input (``seed``/``noise_seed``) in a prompt."""
    targets = []
    for node_id, node in prompt.items():
        inputs = node.get("inputs") if isinstance(node, Mapping) else None
        for name in SEED_INPUTS:
            value = inputs.get(name) if isinstance(inputs, Mapping) else None
            if isinstance(value, int) and not isinstance(value, bool):
                targets.append(f"{node_id}.{name}")
    return targets


def repeat_warning(
    prompts: Sequence[Mapping[str, Any]], params: Sequence[Mapping[str, Any]] = ()
) -> str | None:
    """A warning for jobs that repeat an identical prompt, with the fix; None when none do.

    ``params`` are the jobs' parameter records: a workflow with a ``seed`` parameter is told
    ``--param seed=random``; otherwise the seed inputs of the prompt are named for ``--set``.
    """
    repeats = repeated_jobs(prompts)
    if not repeats:
        return None
    total = len(prompts)
    head = (
        f"warning: {repeats} of {total} jobs repeat an identical prompt; ComfyUI serves a repeat "
        "from its cache (no new work, the same files, outputs marked cached)."
    )
    if any("seed" in record for record in params):
        return f"{head} For different images draw a fresh seed per job: --param seed=random"
    targets = seed_targets(prompts[0]) if prompts else []
    if targets:
        fixes = " ".join(f"--set {target}=random" for target in targets)
        return f"{head} For different images draw a fresh seed per job: {fixes}"
    return f"{head} Vary an input per job (--sweep) for different results."
