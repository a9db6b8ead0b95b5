"""What the simulator did, for tests and benchmarks (GET /_sim/stats).

A run that started at least one uncached node counts as an execution of its prompt id; a run
served entirely from the cache counts as a cached run. Times are ``time.time()`` seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Accounting:
    started_at: float = field(default_factory=time.time)
    executions: dict[str, int] = field(default_factory=dict)
    cached_runs: dict[str, int] = field(default_factory=dict)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    busy_seconds: float = 0.0
    node_executions: int = 0
    prompts_accepted: int = 0
    prompts_rejected: int = 0

    def record_run(
        self, prompt_id: str, start: float, end: float, status: str, nodes_started: int
    ) -> None:
        """One prompt taken off the queue and finished (success, error or interrupted)."""
        counter = self.executions if nodes_started else self.cached_runs
        counter[prompt_id] = counter.get(prompt_id, 0) + 1
        self.node_executions += nodes_started
        self.busy_seconds += end - start
        self.timeline.append(
            {
                "prompt_id": prompt_id,
                "start": start,
                "end": end,
                "status": status,
                "nodes_executed": nodes_started,
                "cached": nodes_started == 0,
            }
        )

    def snapshot(self, *, queue_remaining: int, faults_fired: dict[str, int]) -> dict[str, Any]:
        return {
            "executions": dict(self.executions),
            "cached_runs": dict(self.cached_runs),
            "timeline": list(self.timeline),
            "busy_seconds": self.busy_seconds,
            "wall_seconds": time.time() - self.started_at,
            "started_at": self.started_at,
            "runs": len(self.timeline),
            "node_executions": self.node_executions,
            "prompts_accepted": self.prompts_accepted,
            "prompts_rejected": self.prompts_rejected,
            "queue_remaining": queue_remaining,
            "faults_fired": faults_fired,
        }

    def reset(self) -> None:
        fresh = Accounting()
        self.__dict__.update(fresh.__dict__)
