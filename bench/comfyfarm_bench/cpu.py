"""CPU used while a mode ran: by this (client) process, and by the whole machine.

On a small shared machine the farm, the simulators and the benchmark's own client compete for
the same cores; these figures say whether a mode was CPU-bound and how much of it was the client.
Machine figures come from ``/proc/stat`` (None off Linux).
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

PROC_STAT = Path("/proc/stat")


def _process_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _machine_ticks() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs since boot."""
    try:
        fields = PROC_STAT.read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    values = [int(value) for value in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return sum(values) - idle, sum(values)


@dataclass
class CpuUse:
    """Context manager: ``client_seconds`` (this process, all threads, user + system) and
    ``machine_busy`` (fraction of all cores busy, 0..1) over the block."""

    client_seconds: float = 0.0
    machine_busy: float | None = None
    cores: int = os.cpu_count() or 1

    def __enter__(self) -> CpuUse:
        self._process = _process_seconds()
        self._machine = _machine_ticks()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.client_seconds = _process_seconds() - self._process
        now = _machine_ticks()
        if self._machine is not None and now is not None and now[1] > self._machine[1]:
            self.machine_busy = (now[0] - self._machine[0]) / (now[1] - self._machine[1])

    def to_dict(self) -> dict[str, float | int | None]:
        busy = None if self.machine_busy is None else round(self.machine_busy, 3)
        return {"client_seconds": round(self.client_seconds, 2), "machine_busy": busy,
                "cores": self.cores}  # fmt: skip
