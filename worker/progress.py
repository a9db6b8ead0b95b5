"""ComfyUI events of one prompt, folded into :class:`tasks.models.JobProgress` for producers and
Flower.

The overall percentage counts finished nodes of the prompt (cached nodes count as done at once) and
adds the running node's own fraction (sampler steps), so a bar moves steadily through a
20-step sampler instead of jumping from node to node. The percentage never goes down: a node that
restarts its own counter (a second sampler pass, a retried download) holds the bar where it was.

Records are throttled: at most one every ``min_interval`` seconds, except phase changes and node
changes, which are always offered (``worker.progress_sender`` decides which go out, and when).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from comfyfarm.comfy.events import (
    Event,
    Executing,
    ExecutionCached,
    Progress,
)
from comfyfarm.tasks.models import JobProgress, JobSpec


class ProgressEstimator:
    """Folds the events of one prompt into a :class:`JobProgress`.

    ``clock`` (monotonic seconds) is only used for throttling; tests pass a fake one.
    """

    def __init__(
        self,
        spec: JobSpec,
        *,
        worker: str,
        min_interval: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._spec = spec
        self._worker = worker
        self._min_interval = min_interval
        self._clock = clock
        self._total = max(1, len(spec.prompt))
        self._done: set[str] = set()
        self._node: str | None = None
        self._value = 0.0
        self._max = 0.0
        self._phase = "queued"
        self._last_sent: float | None = None
        self._percent = 0.0

    def phase(self, phase: str) -> JobProgress:
        """A progress record for a phase change (always emitted)."""
        self._phase = phase
        if phase == "collecting":
            if self._node is not None:
                self._done.add(self._node)
            self._done.update(self._spec.prompt)
            self._node = None
            self._value = self._max = 0.0
        self._last_sent = self._clock()
        return self._snapshot()

    def feed(self, event: Event | object) -> JobProgress | None:
        """Update from one event; returns a record when one should be sent now."""
        forced = False
        if isinstance(event, ExecutionCached):
            self._done.update(node for node in event.nodes if node in self._spec.prompt)
            self._phase = "running"
            forced = True
        elif isinstance(event, Executing):
            if event.node == self._node:
                return None
            if self._node is not None:
                self._done.add(self._node)
            self._node = event.node
            self._value = self._max = 0.0
            self._phase = "running"
            forced = True
        elif isinstance(event, Progress):
            if event.node is not None and self._node is not None and event.node != self._node:
                return None  # a nested or stray node's counter is not the running node's
            self._value, self._max = event.value, event.max
        else:
            return None
        now = self._clock()
        if (
            not forced
            and self._last_sent is not None
            and now - self._last_sent < self._min_interval
        ):
            return None
        self._last_sent = now
        return self._snapshot()

    def _snapshot(self) -> JobProgress:
        fraction = min(1.0, self._value / self._max) if self._max > 0 else 0.0
        running = 0.0 if self._node is None or self._node in self._done else fraction
        done = len(self._done & self._spec.prompt.keys())
        percent = min(100.0, 100.0 * (done + running) / self._total)
        self._percent = max(self._percent, round(percent, 1))
        node_type = None
        if self._node is not None:
            node = self._spec.prompt.get(self._node)
            node_type = node.get("class_type") if isinstance(node, dict) else None
        return JobProgress(
            job_id=self._spec.job_id,
            phase=self._phase,
            node=self._node,
            node_type=node_type,
            value=max(0.0, self._value),
            max=max(0.0, self._max),
            percent=self._percent,
            nodes_done=done,
            nodes_total=self._total,
            worker=self._worker,
        )
