"""JobProgress: the meta of the custom Celery state PROGRESS, written by the worker during a job.

Producers read it with ``Job.progress()`` or stream it with ``Job.wait(on_progress=...)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from comfyfarm.tasks import fields as f
from comfyfarm.tasks.errors import JobResultError

PROGRESS_STATE = "PROGRESS"
PROGRESS_VERSION = 1
Phase = Literal["queued", "uploading", "submitted", "running", "collecting"]
PHASES: tuple[str, ...] = (
    "queued", "uploading", "downloading", "submitted", "running", "collecting",
)  # fmt: skip

E = JobResultError


@dataclass(frozen=True, kw_only=True)
class JobProgress:
    """Where a job is.

    ``node``/``node_type``: the node executing now (None between nodes). ``value``/``max``: the
    node's own progress (sampler steps). ``percent``: the worker's 0..100 estimate for the whole
    job. ``nodes_done``/``nodes_total``: executed (or cached) nodes out of those to run.
    """

    version: int = PROGRESS_VERSION
    job_id: str
    phase: str  # one of PHASES (checked at runtime; Phase is the Literal type)
    node: str | None = None
    node_type: str | None = None
    value: float = 0.0
    max: float = 0.0
    percent: float = 0.0
    nodes_done: int = 0
    nodes_total: int = 0
    worker: str = ""

    def __post_init__(self) -> None:
        if self.version != PROGRESS_VERSION:
            f.fail(E, "version", f"unsupported version {self.version!r} (this code reads 1)")
        f.uuid_text(E, "job_id", self.job_id)
        if self.phase not in PHASES:
            f.fail(E, "phase", f"must be one of {', '.join(PHASES)}")
        f.optional_text(E, "node", self.node, max_len=128)
        f.optional_text(E, "node_type", self.node_type, max_len=256)
        f.number(E, "value", self.value, minimum=0)
        f.number(E, "max", self.max, minimum=0)
        f.number(E, "percent", self.percent, minimum=0, maximum=100)
        f.integer(E, "nodes_done", self.nodes_done, minimum=0, maximum=1_000_000)
        f.integer(E, "nodes_total", self.nodes_total, minimum=0, maximum=1_000_000)
        f.text(E, "worker", self.worker, max_len=256, empty=True)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "job_id": self.job_id,
            "phase": self.phase,
            "node": self.node,
            "node_type": self.node_type,
            "value": self.value,
            "max": self.max,
            "percent": self.percent,
            "nodes_done": self.nodes_done,
            "nodes_total": self.nodes_total,
            "worker": self.worker,
        }

    @classmethod
    def from_dict(cls, data: object) -> JobProgress:
        d = f.mapping(E, "", data)
        return cls(
            version=d.get("version", PROGRESS_VERSION),
            job_id=f.required(E, d, "job_id"),
            phase=f.required(E, d, "phase"),
            node=d.get("node"),
            node_type=d.get("node_type"),
            value=d.get("value", 0.0),
            max=d.get("max", 0.0),
            percent=d.get("percent", 0.0),
            nodes_done=d.get("nodes_done", 0),
            nodes_total=d.get("nodes_total", 0),
            worker=d.get("worker", ""),
        )
