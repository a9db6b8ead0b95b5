"""Dead letters: jobs that failed for good (retries exhausted, or a payload no worker can read).

The worker pushes one entry per such job onto ``<prefix>dead-letter`` (newest first, capped);
producers list them (``farm.dead_letters()``) and may re-submit the kept spec.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import redis

from comfyfarm.tasks.keyspace import dead_letter_key

MAX_DEAD_LETTERS = 10_000


@dataclass(frozen=True, kw_only=True)
class DeadLetter:
    """One job given up on. ``spec`` is the JobSpec dict when it could be read (else the raw
    argument, possibly truncated); ``error`` is the last error's ``to_dict()``."""

    job_id: str
    reason: str
    error: dict[str, Any] | None = None
    worker: str = ""
    attempts: int = 0
    failed_at: float = 0.0
    spec: dict[str, Any] | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "reason": self.reason,
            "error": self.error,
            "worker": self.worker,
            "attempts": self.attempts,
            "failed_at": self.failed_at,
            "spec": self.spec,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeadLetter:
        return cls(
            job_id=str(data.get("job_id", "")),
            reason=str(data.get("reason", "")),
            error=data.get("error"),
            worker=str(data.get("worker", "")),
            attempts=int(data.get("attempts", 0)),
            failed_at=float(data.get("failed_at", 0.0)),
            spec=data.get("spec"),
        )


def push_dead_letter(
    client: redis.Redis, prefix: str, entry: DeadLetter, *, max_len: int = MAX_DEAD_LETTERS
) -> None:
    """Record ``entry`` (``failed_at`` defaults to now); keeps the newest ``max_len`` entries."""
    if not entry.failed_at:
        entry = DeadLetter(**{**entry.__dict__, "failed_at": time.time()})
    key = dead_letter_key(prefix)
    with client.pipeline(transaction=True) as pipe:
        pipe.lpush(key, json.dumps(entry.to_dict()))
        pipe.ltrim(key, 0, max_len - 1)
        pipe.execute()


def list_dead_letters(client: redis.Redis, prefix: str, *, limit: int = 100) -> list[DeadLetter]:
    """The newest ``limit`` dead letters, newest first. Unreadable entries are skipped."""
    if limit <= 0:
        return []
    letters = []
    for raw in client.lrange(dead_letter_key(prefix), 0, limit - 1):
        try:
            letters.append(DeadLetter.from_dict(json.loads(raw)))
        except (ValueError, TypeError, AttributeError):
            continue
    return letters


def count_dead_letters(client: redis.Redis, prefix: str) -> int:
    return int(client.llen(dead_letter_key(prefix)))
