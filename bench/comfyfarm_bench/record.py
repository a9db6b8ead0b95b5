"""What a mode measured on the client side: when each job was handed in and when its result was
available. Times are ``time.time()`` seconds, like the simulators' timelines."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from comfyfarm_bench.cpu import CpuUse


@dataclass
class JobTiming:
    """One job: handed to the system at ``submitted_at``; result available at ``done_at``."""

    job_id: str
    submitted_at: float
    done_at: float | None = None
    ok: bool = False
    error: str | None = None
    # farm only, from the JobResult: run_job started and result built (worker clock = ours)
    worker_span: tuple[float, float] | None = None

    @property
    def worker_seconds(self) -> float | None:
        return None if self.worker_span is None else self.worker_span[1] - self.worker_span[0]

    @property
    def latency(self) -> float | None:
        return None if self.done_at is None else self.done_at - self.submitted_at


@dataclass
class ModeRun:
    """Client-side record of one mode: start, end and one JobTiming per job.

    ``requested`` jobs were to be run; ``started_at`` is when the mode began handing in work,
    ``finished_at`` when the last result was available (see ``close``). ``extra`` carries
    mode-specific figures (worker memory...). A mode's threads add timings through ``add``
    (thread-safe).
    """

    mode: str
    started_at: float
    requested: int = 0
    finished_at: float = 0.0
    jobs: list[JobTiming] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, timing: JobTiming) -> None:
        with self._lock:
            self.jobs.append(timing)

    def close(self) -> None:
        """Set ``finished_at``: the last result's time, or now if no job finished."""
        times = [job.done_at for job in self.done if job.done_at is not None]
        self.finished_at = max(times) if times else time.time()

    @property
    def done(self) -> list[JobTiming]:
        return [job for job in self.jobs if job.ok and job.done_at is not None]

    @property
    def failed(self) -> int:
        """Jobs requested that did not end with a result (failed, lost, or never sent)."""
        return max(0, self.requested - len(self.done))

    @property
    def wall_seconds(self) -> float:
        return max(0.0, self.finished_at - self.started_at)


def run_threads(record: ModeRun, threads: Sequence[threading.Thread]) -> ModeRun:
    """Start ``threads``, wait for all, close ``record``; the CPU used meanwhile goes to
    ``record.extra["cpu"]``."""
    with CpuUse() as cpu:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        record.close()
    record.extra["cpu"] = cpu.to_dict()
    return record
