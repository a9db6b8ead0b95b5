"""The soak's hands on the processes: a keeper per simulator and a worker killer.

``SimKeeper`` (one thread per simulator) polls ``/_sim/stats`` every ``poll`` seconds, feeds the
``ExecutionLedger`` and restarts its simulator on the same port, as a supervisor would, when it
crashed (process gone), hangs (a run started and nothing ended for ``hang_seconds``; the ``hang``
fault ignores interrupts, so only a restart frees it) or stops answering for
``unresponsive_seconds``. Each restart gets a new fault seed, or a seeded simulator would replay
the same faults from its first job on, again and again.

``WorkerKiller`` SIGKILLs the whole process group of a random worker every ``every`` seconds (a
machine losing power: the main process and its pool children, no warm shutdown) and starts it
again with the same name, ComfyUI and environment.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import requests

from comfyfarm.services import ManagedProcess, ServiceError, SimulatorProcess
from comfyfarm_bench.soak_ledger import ExecutionLedger, Incarnation
from comfyfarm_bench.soak_recovery import RecoveryWatch

log = logging.getLogger(__name__)

CRASH_EXIT_CODE = 70  # simulator.instance.CRASH_EXIT_CODE (the simulator imports nothing of ours)
STATS_TIMEOUT = 2.0
START_ATTEMPTS = 5


@dataclass
class LoggedProcess(ManagedProcess):
    """A ManagedProcess that also appends every output line to ``log_path`` (the whole log of a
    process that is killed and started again, not only the last 200 lines)."""

    log_path: Path | None = None

    def _read_output(self, process: Any, became_ready: threading.Event) -> None:
        sink: IO[str] | None = None
        if self.log_path is not None:
            sink = self.log_path.open("a", encoding="utf-8", errors="replace")
            sink.write(f"----- started pid {process.pid} at {time.time():.3f}\n")
        try:
            assert process.stdout is not None
            for line in process.stdout:
                if sink is not None:
                    sink.write(line)
                    sink.flush()
                self.output.append(line)
                del self.output[:-200]
                if not became_ready.is_set() and self.ready(line):
                    became_ready.set()
        finally:
            became_ready.set()
            if sink is not None:
                sink.close()


@dataclass
class KeeperCounts:
    restarts_after_crash: int = 0
    restarts_after_hang: int = 0
    restarts_unresponsive: int = 0
    unexpected_exits: int = 0
    failed_starts: int = 0


@dataclass
class SimKeeper:
    """Watches and restarts one simulator (see the module docstring)."""

    index: int
    sim: SimulatorProcess
    ledger: ExecutionLedger
    fault_args: Callable[[int], list[str]]
    poll: float = 0.2
    hang_seconds: float = 4.0
    unresponsive_seconds: float = 5.0
    counts: KeeperCounts = field(default_factory=KeeperCounts)
    incarnation: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def current(self) -> Incarnation:
        return (self.index, self.incarnation)

    def start(self) -> SimKeeper:
        self._thread = threading.Thread(target=self._run, name=f"sim-keeper-{self.index}")
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def poll_once(self) -> dict[str, Any] | None:
        """One ``/_sim/stats`` into the ledger; None when the simulator did not answer."""
        try:
            response = requests.get(f"{self.sim.url}/_sim/stats", timeout=STATS_TIMEOUT)
            response.raise_for_status()
            stats: dict[str, Any] = response.json()
        except (requests.RequestException, ValueError):
            return None
        self.ledger.observe(self.current, stats)
        return stats

    def _run(self) -> None:
        http_ok_at = time.monotonic()
        progress: tuple[int, int] | None = None  # (jobs_started, runs) while a run is open
        progress_since = time.monotonic()
        while not self._stop.wait(self.poll):
            proc = self.sim.proc
            if proc is None or not proc.alive():
                code = proc.process.returncode if proc is not None and proc.process else None
                if code == CRASH_EXIT_CODE:
                    self.counts.restarts_after_crash += 1
                else:
                    self.counts.unexpected_exits += 1
                    log.warning("simulator %d exited with %s", self.index, code)
                self._restart(kill=False, reason=f"exit {code}")
                http_ok_at, progress = time.monotonic(), None
                continue
            stats = self.poll_once()
            now = time.monotonic()
            if stats is None:
                if now - http_ok_at > self.unresponsive_seconds:
                    self.counts.restarts_unresponsive += 1
                    self._restart(kill=True, reason="unresponsive")
                    http_ok_at, progress = time.monotonic(), None
                continue
            http_ok_at = now
            started, runs = int(stats.get("jobs_started", 0)), int(stats.get("runs", 0))
            if started <= runs:
                progress = None
            elif progress != (started, runs):
                progress, progress_since = (started, runs), now
            elif now - progress_since > self.hang_seconds:
                self.counts.restarts_after_hang += 1
                self._restart(kill=True, reason="hang")
                http_ok_at, progress = time.monotonic(), None

    def _restart(self, *, kill: bool, reason: str) -> None:
        """End the current incarnation (SIGKILL it if still running) and start the next one."""
        with self._lock:
            if kill:
                self.sim.kill()
            ended = time.time()
            self.ledger.end(self.current, ended)
            self.events.append(
                {"sim": self.index, "incarnation": self.incarnation, "ended": ended,
                 "reason": reason}
            )  # fmt: skip
            self.incarnation += 1
            self.sim.args = self.fault_args(self.incarnation)
            for attempt in range(START_ATTEMPTS):
                if self._stop.is_set():
                    return
                try:
                    self.sim.start()
                    return
                except ServiceError as exc:
                    self.counts.failed_starts += 1
                    log.warning("simulator %d did not start (%d): %s", self.index, attempt, exc)
                    time.sleep(0.5 * (attempt + 1))


@dataclass
class WorkerSlot:
    """One worker: its process (started again after each kill) and its simulator."""

    name: str
    proc: LoggedProcess
    ready_timeout: float


class WorkerKiller:
    """SIGKILLs a random worker's process group every ``every`` seconds and starts it again;
    ``watch`` (``soak_recovery.RecoveryWatch``) is told which jobs each kill orphaned."""

    def __init__(
        self,
        slots: Sequence[WorkerSlot],
        every: float,
        *,
        rng: random.Random,
        watch: RecoveryWatch | None = None,
    ) -> None:
        self.slots = list(slots)
        self.watch = watch
        self.every = every
        self.rng = rng
        self.kills = 0
        self.failed_restarts = 0
        self.events: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="worker-killer", daemon=True)

    def start(self) -> WorkerKiller:
        if self.every > 0 and self.slots:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(240)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            slot = self.rng.choice(self.slots)
            if not slot.proc.alive():
                continue
            pid = slot.proc.pid
            held = self._held_by(slot.name)
            kill_group(slot.proc)
            killed_at = time.time()
            self.kills += 1
            self.events.append({"worker": slot.name, "pid": pid, "at": killed_at})
            if self.watch is not None:
                self.watch.killed(slot.name, held, at=killed_at)
            try:
                slot.proc.start(slot.ready_timeout)
            except ServiceError as exc:
                self.failed_restarts += 1
                log.warning("worker %s did not start again: %s", slot.name, exc)

    def _held_by(self, name: str) -> dict[str, str]:
        if self.watch is None:
            return {}
        try:
            return self.watch.held_by(name)
        except Exception as exc:  # a measurement must not stop the kills
            log.warning("could not read the jobs of worker %s: %s", name, exc)
            return {}


def kill_group(proc: ManagedProcess, timeout: float = 10.0) -> None:
    """SIGKILL the process group of ``proc`` (main process and pool children) and wait until
    every member is gone."""
    if proc.process is None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.process.wait()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)  # nothing signals the end of another process's children
