"""A worker's own ComfyUI, run as a child process (``comfyfarm worker --comfy-cmd "…"``).

The supervisor starts ComfyUI, waits until it answers, optionally runs a warm-up prompt (the
first job then does not pay for loading the model), and watches it from a thread:

- ComfyUI died: started again after a backoff (1, 2, 5, 10, 30 s, reset after a healthy minute).
  Meanwhile the health gate stops consuming, and jobs in flight are reconciled as after any
  ComfyUI restart (retried; a prompt is never POSTed twice).
- Recycling (optional): after N jobs, or when ComfyUI's resident memory passes a mark, it is
  restarted at the next moment no job of this worker is in flight (leaks and fragmented VRAM go).
- Shutdown: the worker drains first (Celery's warm/soft shutdown lets the running prompt finish),
  then ``stop`` sends SIGTERM to ComfyUI's process group and SIGKILL after a grace period.

ComfyUI's stdout and stderr go to one log file per worker (appended, never to our own log).
Jobs are counted across the prefork pool with shared counters created before the pool forks.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comfyfarm.comfy.client import ComfyClient
from comfyfarm.comfy.errors import ComfyError

log = logging.getLogger(__name__)

BACKOFF_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)
HEALTHY_RESET_SECONDS = 60.0


class SupervisorError(Exception):
    """Raised when the supervised ComfyUI cannot be started or warmed up."""


@dataclass
class JobCounter:
    """Jobs started and finished by the pool's children, visible to the main process."""

    started: Any = field(default_factory=lambda: multiprocessing.Value("q", 0))
    finished: Any = field(default_factory=lambda: multiprocessing.Value("q", 0))

    def in_flight(self) -> int:
        return int(self.started.value - self.finished.value)

    def connect(self, task_name: str) -> None:
        """Count runs of ``task_name`` from Celery's signals (they fire in the pool child)."""
        from celery import signals

        def prerun(task: Any = None, **_: Any) -> None:
            if getattr(task, "name", None) == task_name:
                with self.started.get_lock():
                    self.started.value += 1

        def postrun(task: Any = None, **_: Any) -> None:
            if getattr(task, "name", None) == task_name:
                with self.finished.get_lock():
                    self.finished.value += 1

        signals.task_prerun.connect(prerun, weak=False)
        signals.task_postrun.connect(postrun, weak=False)


@dataclass
class ComfySupervisor:
    """Starts, watches, recycles and stops one ComfyUI process."""

    command: list[str]
    url: str
    log_path: Path
    cwd: str | None = None
    ready_timeout: float = 600.0
    warmup_prompt: dict[str, Any] | None = None
    recycle_after_jobs: int | None = None
    recycle_above_bytes: int | None = None
    jobs: JobCounter = field(default_factory=JobCounter)
    restarts: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _stopping: threading.Event = field(default_factory=threading.Event, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)
    _jobs_at_start: int = field(default=0, init=False)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start ComfyUI, wait until it answers, warm it up, then watch it from a thread."""
        self._spawn()
        self._wait_ready()
        if self.warmup_prompt is not None:
            self._warm_up(self.warmup_prompt)
        self._thread = threading.Thread(target=self._watch, name="comfy-supervisor", daemon=True)
        self._thread.start()

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM to ComfyUI's process group, SIGKILL after ``grace`` seconds."""
        self._stopping.set()
        self._terminate(grace)
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- internals -------------------------------------------------------------------------------

    def _spawn(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log_file:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log_file.write(f"--- comfyfarm: starting ComfyUI at {stamp} ---\n".encode())
            log_file.flush()
            self.process = subprocess.Popen(
                self.command, cwd=self.cwd, stdout=log_file, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        self._jobs_at_start = int(self.jobs.finished.value)
        log.info("started ComfyUI (pid %d), log in %s", self.process.pid, self.log_path)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        with ComfyClient(self.url, timeout=5.0) as client:
            while time.monotonic() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    raise SupervisorError(
                        f"ComfyUI exited with status {self.process.returncode} while starting; "
                        f"see {self.log_path}"
                    )
                try:
                    client.system_stats()
                    return
                except ComfyError:
                    if self._stopping.wait(0.2):
                        return
        raise SupervisorError(
            f"ComfyUI did not answer at {self.url} within {self.ready_timeout:.0f} s; "
            f"see {self.log_path}"
        )

    def _warm_up(self, prompt: dict[str, Any]) -> None:
        prompt_id = str(uuid.uuid4())
        deadline = time.monotonic() + self.ready_timeout
        with ComfyClient(self.url, timeout=30.0) as client:
            try:
                client.queue_prompt(prompt, prompt_id=prompt_id, client_id="comfyfarm-warmup")
                while time.monotonic() < deadline:
                    entry = client.get_history(prompt_id)
                    if entry is not None:
                        log.info("warm-up prompt finished: %s", entry.status_str or "done")
                        return
                    if self._stopping.wait(0.2):
                        return
            except ComfyError as exc:
                raise SupervisorError(f"warm-up prompt failed: {exc}") from exc
        raise SupervisorError(f"warm-up prompt did not finish within {self.ready_timeout:.0f} s")

    def _watch(self) -> None:
        failures = 0
        healthy_since = time.monotonic()
        while not self._stopping.wait(0.5):
            assert self.process is not None
            if self.process.poll() is not None:
                if time.monotonic() - healthy_since > HEALTHY_RESET_SECONDS:
                    failures = 0
                delay = BACKOFF_SECONDS[min(failures, len(BACKOFF_SECONDS) - 1)]
                log.warning("ComfyUI exited (status %s); starting it again in %.0f s",
                            self.process.returncode, delay)  # fmt: skip
                failures += 1
                if self._stopping.wait(delay):
                    return
                self._restart()
                healthy_since = time.monotonic()
            elif self._recycle_due() and self.jobs.in_flight() == 0:
                log.info("recycling ComfyUI (%s)", self._recycle_due())
                self._terminate(grace=30.0)
                self._restart()

    def _restart(self) -> None:
        try:
            self._spawn()
            self._wait_ready()
            self.restarts += 1
        except SupervisorError as exc:
            log.error("%s", exc)

    def _recycle_due(self) -> str:
        """Why ComfyUI should be recycled now ('' when it should not)."""
        done = int(self.jobs.finished.value) - self._jobs_at_start
        if self.recycle_after_jobs and done >= self.recycle_after_jobs:
            return f"{done} jobs since it started"
        if self.recycle_above_bytes and self.process is not None:
            rss = resident_bytes(self.process.pid)
            if rss > self.recycle_above_bytes:
                return f"resident memory {rss >> 20} MiB"
        return ""

    def _terminate(self, grace: float) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        except ProcessLookupError:
            pass


def resident_bytes(pid: int) -> int:
    """Resident memory of a process (Linux ``/proc``; 0 where unavailable)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def load_warmup_prompt(path: str) -> dict[str, Any]:
    """An API-format prompt from a JSON file (the same format ``comfyfarm run`` accepts)."""
    try:
        prompt = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SupervisorError(f"cannot read the warm-up prompt {path}: {exc}") from exc
    if not isinstance(prompt, dict) or not all(
        isinstance(node, dict) and "class_type" in node for node in prompt.values()
    ):
        raise SupervisorError(f"{path}: a warm-up prompt must be in API format (node id → node)")
    return prompt
