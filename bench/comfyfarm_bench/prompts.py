"""Fresh prompts for a benchmark mode: the shipped SD1.5 text-to-image workflow, one seed each.

Every call draws a new random seed range, so no prompt of a run (or of an earlier run on the same
simulators) is identical to another and ComfyUI's cache never serves a job: each one executes.
"""

from __future__ import annotations

import random

from comfyfarm.workflows import PreparedJob, prepare_jobs

WORKFLOW = "sd15_text2image"
_SEED_SPACE = 1 << 48


def fresh_jobs(count: int, *, rng: random.Random | None = None) -> list[PreparedJob]:
    """``count`` prepared jobs of ``WORKFLOW`` with consecutive seeds from a random base."""
    if count < 1:
        raise ValueError("count must be at least 1")
    base = (rng or random.Random()).randrange(_SEED_SPACE)
    return prepare_jobs(WORKFLOW, schema=None, sweeps=[f"seed={base}..{base + count - 1}"])


def deal(items: list[PreparedJob], hands: int) -> list[list[PreparedJob]]:
    """Round-robin ``items`` into ``hands`` lists (sizes differ by at most one)."""
    return [items[index::hands] for index in range(hands)]
