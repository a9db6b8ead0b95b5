"""A worker that runs its own ComfyUI (the simulator as the child): started, restarted after a
crash, recycled, warmed up, and stopped with the worker."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests
from farm_kit import WorkerFactory, sim_stats, wait_until

from comfyfarm.producer import Farm
from comfyfarm.services import SimulatorProcess, free_port

PROMPT = {
    "1": {"class_type": "EmptyImage",
          "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "s"}},
}  # fmt: skip


def supervised_sim(tmp_path: Path, *extra: str) -> tuple[SimulatorProcess, str]:
    """A simulator that is not started here (the worker starts it) and its command line."""
    sim = SimulatorProcess(port=free_port())
    command = [sys.executable, "-P", "-m", "comfyfarm.simulator", "--port", str(sim.port),
               "--step-ms", "1", "--load-ms", "0", "--root", str(tmp_path / "comfy"),
               *extra]  # fmt: skip
    return sim, shlex.join(command)


def comfy_pid(sim: SimulatorProcess) -> int:
    """The simulator's pid, from the argv it reports in /system_stats."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"comfyfarm.simulator" in cmdline and str(sim.port).encode() in cmdline:
                return int(entry.name)
    raise AssertionError("the supervised simulator is not running")


def answers(sim: SimulatorProcess) -> bool:
    try:
        return requests.get(sim.url + "/system_stats", timeout=2).ok
    except requests.RequestException:
        return False


def starts_logged(log: Path) -> int:
    return log.read_text().count("comfyfarm: starting ComfyUI")


def test_worker_starts_its_comfyui_restarts_it_after_a_crash_and_stops_it(
    workers: WorkerFactory, farm: Farm, tmp_path: Path
) -> None:
    """The child answers before jobs run; after SIGKILL it is started again and jobs still
    succeed; SIGTERM to the worker stops the child too. Its output goes to the log file."""
    sim, command = supervised_sim(tmp_path)
    log = tmp_path / "comfy.log"
    worker = workers.start(sim, "sup", args=("--comfy-cmd", command, "--comfy-log", str(log)))
    assert farm.submit(PROMPT).wait(timeout=60).status == "succeeded"
    assert starts_logged(log) == 1

    os.kill(comfy_pid(sim), signal.SIGKILL)
    wait_until(lambda: starts_logged(log) == 2, what="ComfyUI started again")
    wait_until(lambda: answers(sim), what="the restarted ComfyUI to answer")
    assert farm.submit(PROMPT).wait(timeout=60).status == "succeeded"

    worker.terminate()
    worker.reap()
    assert not answers(sim)


def test_comfyui_is_recycled_after_n_jobs_when_idle(
    workers: WorkerFactory, farm: Farm, tmp_path: Path
) -> None:
    """--recycle-after-jobs 2: after two jobs the child is restarted; later jobs succeed."""
    sim, command = supervised_sim(tmp_path)
    log = tmp_path / "comfy.log"
    workers.start(
        sim, "rec", args=("--comfy-cmd", command, "--comfy-log", str(log),
                          "--recycle-after-jobs", "2"),
    )  # fmt: skip
    for _ in range(2):
        assert farm.submit(PROMPT).wait(timeout=60).status == "succeeded"
    wait_until(lambda: starts_logged(log) == 2, what="ComfyUI recycled")
    wait_until(lambda: answers(sim), what="the recycled ComfyUI to answer")
    assert farm.submit(PROMPT).wait(timeout=60).status == "succeeded"


def test_the_warmup_prompt_runs_before_the_worker_takes_jobs(
    workers: WorkerFactory, tmp_path: Path
) -> None:
    """--warmup PROMPT.json is executed once on the fresh ComfyUI before the worker is ready."""
    sim, command = supervised_sim(tmp_path)
    warmup = tmp_path / "warmup.json"
    warmup.write_text(json.dumps(PROMPT))
    workers.start(sim, "warm", args=("--comfy-cmd", command, "--warmup", str(warmup),
                                     "--comfy-log", str(tmp_path / "c.log")))  # fmt: skip
    assert sum(sim_stats(sim)["executions"].values()) == 1


STOPPED = re.compile(r"comfyfarm-sim: stopped by SIGTERM at (\d+\.\d+)")


@pytest.mark.parametrize("env", [{}, {"REMAP_SIGTERM": "SIGQUIT"}], ids=["warm", "soft"])
def test_sigterm_drains_the_running_prompt_before_stopping_comfyui(
    workers: WorkerFactory, farm: Farm, tmp_path: Path, env: dict[str, str]
) -> None:
    """SIGTERM (plain, and remapped to a soft shutdown as in docker-compose.yml) while a prompt
    runs: the worker stops consuming, the prompt finishes and its result is stored as
    succeeded, and only then is its ComfyUI child stopped, by the time the child logged."""
    sim, command = supervised_sim(tmp_path, "--class-ms", "EmptyImage=1500", "--log-level", "info")
    log = tmp_path / "comfy.log"
    worker = workers.start(sim, "drain", env=env,
                           args=("--comfy-cmd", command, "--comfy-log", str(log)))  # fmt: skip
    job = farm.submit(PROMPT)
    wait_until(lambda: f"[sim] running prompt {job.job_id}" in log.read_text(), what="the prompt")

    worker.terminate()
    wait_until(lambda: any("shutdown" in line.lower() for line in list(worker.proc.output)),
               10, "the worker to begin its shutdown")  # fmt: skip
    late = farm.submit(PROMPT)  # after the drain began: must stay queued, not run here
    result = job.wait(timeout=30)
    assert result.status == "succeeded" and result.worker == "drain", result.error
    assert worker.proc.process is not None and worker.proc.process.wait(30) is not None
    assert not answers(sim)

    text = log.read_text()
    stopped = STOPPED.search(text)
    assert stopped, text[-2000:]
    stopped_at = float(stopped.group(1))
    [stored] = Path(urlparse(workers.storage_url).path).rglob(f"{job.job_id}/result.json")
    assert json.loads(stored.read_text())["status"] == "succeeded"
    assert result.timings.finished_at < stored.stat().st_mtime <= stopped_at
    assert text.index("Prompt executed in") < stopped.start()
    assert late.status() == "queued" and late.job_id not in text
