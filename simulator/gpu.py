"""Simulated GPU time: what each node costs and which checkpoint is loaded.

Cost model (milliseconds): every executed node costs ``node_ms`` plus its ``class_ms`` entry;
KSampler adds ``steps * step_ms``; CheckpointLoaderSimple adds ``load_ms`` when it loads a
different checkpoint than the one in memory. With ``job_ms`` the total per executed prompt is
fixed instead and shared out by those costs (equally when they are all zero).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from comfyfarm.simulator.config import Timing

SAMPLERS = ("KSampler",)
LOADERS = ("CheckpointLoaderSimple",)
DEFAULT_STEPS = 20  # when steps come through a link, the plan cannot know them


@dataclass
class SimulatedGpu:
    timing: Timing
    loaded_checkpoint: str | None = None
    model_loads: int = 0  # checkpoints loaded (a different one than was in memory)

    def load(self, ckpt_name: str) -> None:
        """A checkpoint loader ran: count a load when it replaces what was in memory."""
        if ckpt_name != self.loaded_checkpoint:
            self.model_loads += 1
        self.loaded_checkpoint = ckpt_name

    def node_cost_ms(self, class_type: str, inputs: Mapping[str, Any]) -> float:
        cost = self.timing.node_ms + self.timing.class_ms.get(class_type, 0.0)
        if class_type in SAMPLERS:
            steps = inputs.get("steps")
            cost += (steps if isinstance(steps, int) else DEFAULT_STEPS) * self.timing.step_ms
        if class_type in LOADERS and inputs.get("ckpt_name") != self.loaded_checkpoint:
            cost += self.timing.load_ms
        return cost

    def plan(self, nodes: Mapping[str, tuple[str, Mapping[str, Any]]]) -> dict[str, float]:
        """Seconds for each node about to execute (``node_id -> (class_type, inputs)``)."""
        costs = {node_id: self.node_cost_ms(c, i) for node_id, (c, i) in nodes.items()}
        if self.timing.job_ms is None:
            return {node_id: ms / 1000 for node_id, ms in costs.items()}
        total = sum(costs.values())
        if total <= 0:
            costs = {node_id: 1.0 for node_id in costs}
            total = float(len(costs))
        return {node_id: self.timing.job_ms * ms / total / 1000 for node_id, ms in costs.items()}

    def unload(self) -> None:
        self.loaded_checkpoint = None
