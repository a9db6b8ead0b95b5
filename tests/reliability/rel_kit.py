"""Small helpers of the reliability tests (the farm helpers live in ``farm_kit``)."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import requests
from farm_kit import WorkerProcess, wait_until

from comfyfarm.producer import Job
from comfyfarm.services import SimulatorProcess
from comfyfarm.workflows import PreparedJob, SchemaSource, prepare_jobs


def text2image(sim: SimulatorProcess, steps: int = 20) -> PreparedJob:
    """The shipped SD 1.5 text-to-image workflow (one SaveImage output) with ``steps`` steps."""
    [prepared] = prepare_jobs(
        "sd15_text2image", schema=SchemaSource.from_url(sim.url), params=[f"steps={steps}"]
    )
    return prepared


def kill_group(worker: WorkerProcess) -> None:
    """SIGKILL the worker's whole process group (main process and pool children), as a machine
    losing power would; waits until the main process is gone."""
    assert worker.proc.process is not None
    os.killpg(worker.proc.pid, signal.SIGKILL)
    worker.proc.process.wait()
    wait_until(lambda: not _group_alive(worker.proc.pid), 10, "the pool children to die")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def running_on(job: Job) -> str:
    """The name of the worker whose prompt is executing ``job`` (waits for it)."""
    progress = wait_until(
        lambda: (p := job.progress()) is not None and p.phase == "running" and p,
        20,
        f"job {job.job_id} to run",
    )
    assert progress
    return progress.worker


def files_of(out_dir: Path, job_id: str) -> list[str]:
    """Every file (also temporary ones) anywhere under ``out_dir`` that belongs to the job."""
    return sorted(
        str(path.relative_to(out_dir))
        for path in out_dir.rglob("*")
        if path.is_file() and job_id in str(path)
    )


def outside(root: Path, before: set[Path]) -> list[Path]:
    """Files that appeared under ``root`` since ``before`` (a snapshot of ``root.rglob``)."""
    return sorted(set(root.rglob("*")) - before)


def arm(sim: SimulatorProcess, **faults: object) -> None:
    """Arm faults at runtime (``POST /_sim/faults``): gone when the simulator restarts."""
    response = requests.post(sim.url + "/_sim/faults", json=faults, timeout=5)
    response.raise_for_status()


class Supervisor:
    """Restarts a simulator on its port whenever its process exits, as systemd or Docker would
    restart a crashed ComfyUI. Waits on the process (an event), never polls."""

    def __init__(self, sim: SimulatorProcess) -> None:
        self.sim = sim
        self.restarts = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Supervisor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self.sim.stop()  # wakes the thread; it sees the flag and ends
        self._thread.join(15)

    def _run(self) -> None:
        while not self._stopping.is_set():
            proc = self.sim.proc
            assert proc is not None and proc.process is not None
            proc.process.wait()
            if self._stopping.is_set():
                return
            self.restarts += 1
            self.sim.start()
