"""A fleet of simulated GPUs for one benchmark run: N simulators with a fixed time per prompt.

Started concurrently (32 Python start-ups one after the other take long on a small machine) and
stopped together. The same fleet serves every mode of a run; ``reset_stats`` between modes.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

import requests

from comfyfarm.services import ManagedProcess, SimulatorProcess
from comfyfarm_bench.timeline import Run, runs_from_stats

STATS_TIMEOUT = 30.0


def start_concurrently(
    processes: Sequence[Any], start: Callable[[Any], object], *, parallel: int = 8
) -> None:
    """``start(process)`` for every process, ``parallel`` at a time. If any fails, stop those
    that started and re-raise the first error."""
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(processes)))) as pool:
        errors = [future.exception() for future in [pool.submit(start, p) for p in processes]]
    failed = [error for error in errors if error is not None]
    if failed:
        stop_all(processes)
        raise failed[0]


def stop_all(processes: Sequence[Any]) -> None:
    """SIGTERM every process first, then wait for each: shutdowns overlap instead of queueing."""
    managed = [_managed(process) for process in processes]
    for proc in managed:
        if proc is not None:
            proc.signal(signal.SIGTERM)
    for proc in managed:
        if proc is not None:
            proc.stop()


def _managed(process: Any) -> ManagedProcess | None:
    if isinstance(process, ManagedProcess):
        return process if process.process is not None else None
    inner = getattr(process, "proc", None)
    return inner if isinstance(inner, ManagedProcess) else None


class Fleet:
    """``instances`` simulators, each run with ``--job-ms job_ms`` (plus ``extra_args``)."""

    def __init__(
        self,
        instances: int,
        job_ms: float,
        *,
        root: Path | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        if instances < 1:
            raise ValueError("a fleet needs at least one instance")
        self.sims: list[SimulatorProcess] = []
        for index in range(instances):
            args = ["--job-ms", f"{job_ms:g}", "--load-ms", "0", *extra_args]
            if root is not None:
                args += ["--root", str(root / f"sim{index}")]
            self.sims.append(SimulatorProcess(args=args))
        self._http = requests.Session()

    @property
    def urls(self) -> list[str]:
        return [sim.url for sim in self.sims]

    def __len__(self) -> int:
        return len(self.sims)

    def start(self) -> Fleet:
        start_concurrently(self.sims, SimulatorProcess.start)
        return self

    def stop(self) -> None:
        stop_all(self.sims)
        self._http.close()

    def reset_stats(self) -> None:
        """Zero every simulator's accounting (``POST /_sim/stats/reset``)."""
        for url in self.urls:
            self._http.post(f"{url}/_sim/stats/reset", timeout=STATS_TIMEOUT).raise_for_status()

    def stats(self) -> list[dict[str, Any]]:
        """``GET /_sim/stats`` of every simulator, in fleet order."""
        answers = []
        for url in self.urls:
            response = self._http.get(f"{url}/_sim/stats", timeout=STATS_TIMEOUT)
            response.raise_for_status()
            answers.append(response.json())
        return answers

    def runs(self) -> list[list[Run]]:
        """Each simulator's runs since the last reset, ordered by start."""
        return [runs_from_stats(stats) for stats in self.stats()]

    def __enter__(self) -> Fleet:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
