"""Memory of processes, read from ``/proc`` (Linux; no psutil): RSS and PSS of process trees,
a sampler that keeps the peak, and the peak RSS growth of this process during a block.

RSS counts shared pages once per process (a prefork parent and its child both count the code
they share), PSS divides shared pages among the processes sharing them; sums of PSS are the
honest total. Off Linux every figure is None.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

PROC = Path("/proc")


def _status_kib(pid: int | str, field: str) -> int | None:
    try:
        text = (PROC / str(pid) / "status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def rss_kib(pid: int | str = "self") -> int | None:
    """Resident set size (``VmRSS``) in KiB, None if the process is gone."""
    return _status_kib(pid, "VmRSS")


def pss_kib(pid: int) -> int | None:
    """Proportional set size from ``smaps_rollup`` in KiB, None if unreadable."""
    try:
        text = (PROC / str(pid) / "smaps_rollup").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return None


def _parent_of(stat: str) -> int:
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses; split after the last ")".
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def with_descendants(pids: Iterable[int]) -> list[int]:
    """``pids`` and every process below them (children of prefork pools, ...)."""
    children: dict[int, list[int]] = {}
    for entry in PROC.glob("[0-9]*"):
        try:
            parent = _parent_of((entry / "stat").read_text())
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.append(pid)
            todo.extend(children.get(pid, []))
    return found


@dataclass(frozen=True)
class TreeMemory:
    """Summed memory of some process trees, in MiB."""

    processes: int
    rss_mb: float
    pss_mb: float | None

    def to_dict(self) -> dict[str, float | int | None]:
        pss = None if self.pss_mb is None else round(self.pss_mb, 1)
        return {"processes": self.processes, "rss_mb": round(self.rss_mb, 1), "pss_mb": pss}


def tree_memory(roots: Sequence[int]) -> TreeMemory:
    """RSS and PSS sums over ``roots`` and their descendants, read now."""
    pids = with_descendants(roots)
    rss = [value for value in (rss_kib(pid) for pid in pids) if value is not None]
    pss = [value for value in (pss_kib(pid) for pid in pids) if value is not None]
    return TreeMemory(
        processes=len(rss),
        rss_mb=sum(rss) / 1024,
        pss_mb=sum(pss) / 1024 if len(pss) == len(rss) and pss else None,
    )


class MemorySampler:
    """Samples ``tree_memory(roots)`` every ``interval`` seconds in a thread; keeps the peak
    (by RSS). Use as a context manager around the load."""

    def __init__(self, roots: Sequence[int], *, interval: float = 1.0) -> None:
        self.roots = list(roots)
        self.interval = interval
        self.peak: TreeMemory | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)

    def _run(self) -> None:
        while True:
            self._sample()
            if self._stop.wait(self.interval):
                return

    def _sample(self) -> None:
        now = tree_memory(self.roots)
        if self.peak is None or now.rss_mb > self.peak.rss_mb:
            self.peak = now

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


class PeakRssGrowth:
    """How much this process's RSS rose above its level at entry, at the highest point inside
    the block, in MiB (``growth_mb``).

    The kernel's high-water mark (``VmHWM``) is reset on entry by writing ``5`` to
    ``/proc/self/clear_refs``, so a brief spike between samples is still caught; a sampling
    thread (every ``interval`` s) backs it up where the reset is not allowed.
    """

    def __init__(self, *, interval: float = 0.005) -> None:
        self.interval = interval
        self.baseline_kib = 0
        self.peak_kib = 0
        self.hwm_reset = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-peak", daemon=True)

    @property
    def growth_mb(self) -> float:
        return max(0, self.peak_kib - self.baseline_kib) / 1024

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_kib = max(self.peak_kib, rss_kib() or 0)

    def __enter__(self) -> PeakRssGrowth:
        try:
            (PROC / "self" / "clear_refs").write_text("5")
            self.hwm_reset = True
        except OSError:
            self.hwm_reset = False
        self.baseline_kib = self.peak_kib = rss_kib() or 0
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kib = max(self.peak_kib, rss_kib() or 0)
        if self.hwm_reset:
            self.peak_kib = max(self.peak_kib, _status_kib("self", "VmHWM") or 0)
