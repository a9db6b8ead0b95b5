"""Every prompt run the simulators of a soak reported, across their crashes and restarts.

A simulator keeps its accounting (``GET /_sim/stats``) in memory, so a crash loses it. The soak
polls each simulator often and hands every answer to ``ExecutionLedger.observe`` under the
simulator's *incarnation* (index of the simulator, number of its start); the timeline of one
incarnation only grows, so the latest answer holds everything that incarnation reported. When an
incarnation ends (crash, or restarted by the soak) ``end`` records when the soak noticed.

The simulator records a run when it *ends* (success, error or interrupted): a run killed by a
crash or by the restart of a hung simulator never appears, and neither does a run that ended
less than one poll interval before its simulator crashed. ``analyse`` classifies what is visible:

- a *completed execution*: ended ``success`` with at least one node executed;
- an *aborted execution*: nodes executed, but ended ``error`` or ``interrupted``;
- a *cached run*: no node executed (ComfyUI served it from its cache: the prompt was POSTed
  again to the same incarnation);
- a *duplicate execution*: an execution (completed or aborted) of a prompt id that had already
  completed on an incarnation still alive when the new run started — the farm ran the prompt
  again although its result was there to collect;
- a *re-execution after loss*: an execution after every earlier completed run of the prompt id was
  on incarnations that had ended before it started (the history died with ComfyUI: running the
  prompt again is the only way to get its outputs). Not a duplicate.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

Incarnation = tuple[int, int]  # (simulator index, start number)


@dataclass(frozen=True)
class RunRecord:
    """One run from a simulator's timeline."""

    prompt_id: str
    incarnation: Incarnation
    start: float
    end: float
    status: str
    nodes_executed: int

    @property
    def executed(self) -> bool:
        return self.nodes_executed > 0

    @property
    def completed(self) -> bool:
        return self.executed and self.status == "success"


@dataclass
class ExecutionCount:
    """What ``ExecutionLedger.analyse`` found; ``duplicates`` lists ``(prompt_id, count)``."""

    completed: int = 0
    aborted: int = 0
    cached_runs: int = 0
    duplicate_executions: int = 0
    reexecuted_after_loss: int = 0
    duplicates: list[tuple[str, int]] = field(default_factory=list)
    #: completed executions per prompt id, not counting re-executions after loss
    completed_by_prompt: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "completed": self.completed,
            "aborted": self.aborted,
            "cached_runs": self.cached_runs,
            "duplicate_executions": self.duplicate_executions,
            "reexecuted_after_loss": self.reexecuted_after_loss,
            "duplicate_prompt_ids": [prompt for prompt, _ in self.duplicates[:20]],
        }


class ExecutionLedger:
    """The latest timeline of every simulator incarnation, and when each incarnation ended.

    Not thread-safe by itself: each simulator's keeper writes only its own incarnations, and
    ``analyse`` runs after the keepers stopped.
    """

    def __init__(self) -> None:
        self._timelines: dict[Incarnation, list[dict[str, Any]]] = {}
        self._ended: dict[Incarnation, float] = {}
        self._fired: dict[Incarnation, dict[str, int]] = {}

    def observe(self, incarnation: Incarnation, stats: dict[str, Any]) -> None:
        """Keep ``stats`` (a ``/_sim/stats`` answer) if it holds at least as much as before."""
        timeline = stats.get("timeline")
        if isinstance(timeline, list) and len(timeline) >= len(
            self._timelines.get(incarnation, [])
        ):
            self._timelines[incarnation] = timeline
        fired = stats.get("faults_fired")
        if isinstance(fired, dict):
            known = self._fired.setdefault(incarnation, {})
            for name, count in fired.items():
                known[str(name)] = max(known.get(str(name), 0), int(count))

    def end(self, incarnation: Incarnation, when: float) -> None:
        """``incarnation`` is gone (noticed at ``when``, ``time.time()``)."""
        self._ended.setdefault(incarnation, when)

    def faults_fired(self) -> dict[str, int]:
        """Faults the simulators reported firing, summed over incarnations (a crash is rarely
        seen here: the process is gone before the next poll)."""
        total: dict[str, int] = defaultdict(int)
        for fired in self._fired.values():
            for name, count in fired.items():
                total[name] += count
        return dict(total)

    def runs(self) -> list[RunRecord]:
        records = []
        for incarnation, timeline in self._timelines.items():
            for entry in timeline:
                records.append(
                    RunRecord(
                        prompt_id=str(entry["prompt_id"]),
                        incarnation=incarnation,
                        start=float(entry["start"]),
                        end=float(entry["end"]),
                        status=str(entry.get("status", "success")),
                        nodes_executed=int(entry.get("nodes_executed", 1)),
                    )
                )
        return sorted(records, key=lambda run: run.start)

    def analyse(self) -> ExecutionCount:
        """Classify every visible run (see the module docstring)."""
        count = ExecutionCount()
        by_prompt: dict[str, list[RunRecord]] = defaultdict(list)
        for run in self.runs():
            by_prompt[run.prompt_id].append(run)
        for prompt_id, runs in by_prompt.items():
            completed_before: list[RunRecord] = []
            extra = after_loss = 0
            for run in runs:
                if not run.executed:
                    count.cached_runs += 1
                    continue
                if completed_before:
                    if any(
                        self._alive_at(prior.incarnation, run.start) for prior in completed_before
                    ):
                        count.duplicate_executions += 1
                        extra += 1
                    else:
                        count.reexecuted_after_loss += 1
                        after_loss += run.completed
                if run.completed:
                    count.completed += 1
                    completed_before.append(run)
                else:
                    count.aborted += 1
            if extra:
                count.duplicates.append((prompt_id, extra))
            if completed_before:
                count.completed_by_prompt[prompt_id] = len(completed_before) - after_loss
        return count

    def _alive_at(self, incarnation: Incarnation, when: float) -> bool:
        ended = self._ended.get(incarnation)
        return ended is None or ended > when
