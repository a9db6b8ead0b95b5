"""A worker fsyncs every output it stores in file:// storage, unless COMFYFARM_STORAGE_FSYNC=0.

The worker runs the real CLI under a launcher that only wraps ``os.fsync`` to note which
inode each call synced (pool processes are forked, so they inherit the wrapper); the test then
compares those inodes with the files and folders the job left in the store.
"""

from __future__ import annotations

import sys
from pathlib import Path

from farm_kit import WorkerFactory, WorkerProcess, blake3_of, path_of

from comfyfarm.producer import Farm
from comfyfarm.services import SimulatorProcess
from comfyfarm.tasks.result import JobResult
from comfyfarm.workflows import SchemaSource, prepare_jobs

LAUNCHER = """\
import os, runpy, sys

_log, _fsync = os.environ["FSYNC_LOG"], os.fsync


def fsync(fd):
    info = os.fstat(fd)
    with open(_log, "a") as handle:
        handle.write(f"{info.st_dev}:{info.st_ino}\\n")
    return _fsync(fd)


os.fsync = fsync
sys.argv[0] = "comfyfarm"
runpy.run_module("comfyfarm", run_name="__main__", alter_sys=True)
"""


def start_recorded_worker(
    workers: WorkerFactory, sim: SimulatorProcess, tmp_path: Path, env: dict[str, str]
) -> tuple[WorkerProcess, Path]:
    """A worker on ``sim`` run by LAUNCHER, and the file its fsyncs are noted in."""
    launcher = tmp_path / "fsync_launcher.py"
    launcher.write_text(LAUNCHER)
    log = tmp_path / "fsync.log"
    log.touch()
    command = (sys.executable, "-P", str(launcher))
    worker = workers.start(sim, env={**env, "FSYNC_LOG": str(log)}, command=command)
    return worker, log


def run_one_job(farm: Farm, sim_url: str) -> JobResult:
    [prepared] = prepare_jobs("sd15_text2image", schema=SchemaSource.from_url(sim_url))
    result = farm.submit(prepared).wait(60)
    assert result.status == "succeeded", result.error
    return result


def inodes_under(root: Path) -> dict[str, Path]:
    """``dev:ino`` of every file and folder under ``root`` (itself included)."""
    found = {}
    for path in [root, *root.rglob("*")]:
        info = path.stat()
        found[f"{info.st_dev}:{info.st_ino}"] = path
    return found


def test_a_worker_fsyncs_its_outputs_by_default(
    farm: Farm, workers: WorkerFactory, start_sim, out_dir: Path, tmp_path: Path
) -> None:
    """By default the output file and its folder are fsynced before the result is written."""
    sim = start_sim("--step-ms", "1", "--load-ms", "0")
    worker, log = start_recorded_worker(workers, sim, tmp_path, env={})

    result = run_one_job(farm, sim.url)

    [record] = result.outputs
    output = path_of(record.uri or "")
    synced = set(log.read_text().split())
    stored = inodes_under(out_dir)
    expected = {key for key, path in stored.items() if path in (output, output.parent)}
    assert len(expected) == 2 and expected <= synced
    assert "not fsynced" not in worker.log()


def test_a_worker_with_storage_fsync_off_stores_outputs_without_fsync(
    farm: Farm, workers: WorkerFactory, start_sim, out_dir: Path, tmp_path: Path
) -> None:
    """COMFYFARM_STORAGE_FSYNC=0: the job's outputs are stored whole, with their BLAKE3 hash,
    and nothing in the store was fsynced; the worker said so at start."""
    sim = start_sim("--step-ms", "1", "--load-ms", "0")
    worker, log = start_recorded_worker(workers, sim, tmp_path, {"COMFYFARM_STORAGE_FSYNC": "0"})

    result = run_one_job(farm, sim.url)

    [record] = result.outputs
    data = path_of(record.uri or "").read_bytes()
    assert record.hash == blake3_of(data) and record.bytes == len(data) > 0
    stored = inodes_under(out_dir)
    synced = set(log.read_text().split())
    assert len(stored) > 2  # the root, the job's folder, its output and result.json at least
    assert not synced & set(stored), [str(stored[key]) for key in synced & set(stored)]
    assert "outputs are not fsynced" in worker.log()
