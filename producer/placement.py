"""Which workers can run a job, from the node schemas and model lists they published.

In a fleet whose ComfyUIs differ — a checkpoint, a LoRA or a custom node that only some have — a
job on the shared queue may land on a worker that cannot run it: that ComfyUI rejects the prompt
and the job fails, although another worker could have run it. ``place_jobs`` checks each job
against the published schema of every live worker (``tasks.schemas``; workers with the same
schema are checked once) and picks its queue:

- the shared queue when every live worker can run it (the usual, homogeneous fleet);
- otherwise the own queue of a worker that can, taking those workers in turn, so a sweep spreads
  over them;
- no worker can: ``PromptInvalid`` with the problems the newest schema found, before anything is
  queued.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from comfyfarm.tasks.routing import worker_queue
from comfyfarm.tasks.schemas import PublishedSchema
from comfyfarm.workflows import PreparedJob, PromptInvalid, SchemaSource, validate_prompt


@dataclass(frozen=True)
class Placement:
    """Where one job goes: ``queue`` None is the shared queue; ``capable`` the workers that can
    run it."""

    queue: str | None
    capable: tuple[str, ...]


@dataclass
class _Group:
    """Live workers whose ComfyUIs serve the same nodes and models."""

    source: SchemaSource
    workers: list[str]


def place_jobs(
    jobs: Sequence[PreparedJob], published: Sequence[PublishedSchema], live: Collection[str]
) -> list[Placement]:
    """A placement per job (see the module docstring). ``published`` newest first; ``live``
    names the registered workers (published schemas of other workers are ignored, unless no
    published worker is live: then all of them count)."""
    groups = _groups([p for p in published if p.worker in live] or list(published))
    turns: Counter[tuple[str, ...]] = Counter()
    placements = []
    for job in jobs:
        uploads = {(ref.node_id, ref.input_name) for ref in job.inputs}
        capable: list[str] = []
        refusals = []
        for group in groups:
            problems = validate_prompt(job.prompt, group.source, uploads=uploads)
            if problems:
                refusals.append(problems)
            else:
                capable += group.workers
        if refusals and not capable:
            raise PromptInvalid(problems=refusals[0])
        chosen = tuple(sorted(capable))
        if not refusals:
            placements.append(Placement(None, chosen))
            continue
        pick = chosen[turns[chosen] % len(chosen)]
        turns[chosen] += 1
        placements.append(Placement(worker_queue(pick), chosen))
    return placements


def _groups(published: Sequence[PublishedSchema]) -> list[_Group]:
    """Workers grouped by identical schemas, in the order of ``published`` (newest first)."""
    groups: dict[str, _Group] = {}
    for entry in published:
        body = json.dumps([entry.object_info, entry.models], sort_keys=True).encode()
        key = hashlib.sha256(body).hexdigest()
        if key not in groups:
            source = SchemaSource.from_object_info(entry.object_info, models=entry.models)
            groups[key] = _Group(source, [])
        groups[key].workers.append(entry.worker)
    return list(groups.values())
