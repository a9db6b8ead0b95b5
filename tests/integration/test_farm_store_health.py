"""Storage failures through the real path (issue 13 #3, #4): a worker whose output store
cannot be written stops consuming and its jobs run on a healthy worker; a prompt ComfyUI
already has, without a ledger record, is collected and not run again."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from farm_kit import WorkerFactory, executions, sim_stats, wait_until

from comfyfarm.comfy.client import ComfyClient
from comfyfarm.producer import Farm
from comfyfarm.storage.keys import TEMP_PREFIX
from comfyfarm.workflows import SchemaSource, prepare_jobs


def test_a_worker_whose_store_cannot_be_written_stops_consuming(
    farm: Farm, workers: WorkerFactory, start_sim, tmp_path: Path
) -> None:
    """Two workers, one whose store root lies under a regular file (tests run as root, so a
    chmod 0o555 directory would still be writable): it stops consuming, the registry shows
    its store unwritable (so does ``comfyfarm status``), and every job succeeds on the healthy
    one, none on the bad one."""
    good_sim = start_sim("--step-ms", "1", "--load-ms", "0")
    bad_sim = start_sim("--step-ms", "1", "--load-ms", "0")
    blocker = tmp_path / "not-a-mount"
    blocker.write_text("a regular file where the output directory should be")
    bad = workers.start(bad_sim, "bad", env={"COMFYFARM_STORAGE_URL": (blocker / "o").as_uri()})
    workers.start(good_sim, "good")
    bad.wait_for_log("the output store is unavailable: stopped consuming", timeout=10)
    wait_until(
        lambda: (
            {w.info.name: w.info.health for w in farm.status(ping_timeout=None).workers}
            == {"bad": "storage", "good": "ok"}
        ),
        10,
        "the registry to show the bad worker's store",
    )
    [entry] = [w for w in farm.status(ping_timeout=None).workers if w.info.name == "bad"]
    assert "cannot create the store root" in entry.info.extra["storage"]
    shown = subprocess.run(
        [sys.executable, "-P", "-m", "comfyfarm", "status"], env=workers.env(),
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    [bad_line] = [line for line in shown.stdout.splitlines() if line.strip().startswith("bad ")]
    assert "store UNWRITABLE (cannot create the store root" in bad_line
    assert "1 can take jobs" in shown.stdout
    prepared = prepare_jobs(
        "sd15_text2image", schema=SchemaSource.from_url(good_sim.url), sweeps=["seed=1..6"]
    )

    results = [job.wait(30) for job in farm.submit_many(prepared)]

    assert [r.status for r in results] == ["succeeded"] * 6
    assert {r.worker for r in results} == {"good"}
    assert all(executions(bad_sim, r.job_id) == 0 for r in results)
    assert "received" not in bad.log().split("stopped consuming", 1)[1]


def test_a_prompt_comfyui_has_but_the_ledger_lost_is_not_run_twice(
    farm: Farm, workers: WorkerFactory, start_sim
) -> None:
    """The prompt was POSTed (prompt id = job id) and the ledger record of it lost, as after
    Redis lost its last second of AOF: the worker asks ComfyUI first and follows it; the
    simulator accepted one POST and ran the prompt once."""
    sim = start_sim("--step-ms", "1", "--load-ms", "0")
    [prepared] = prepare_jobs("sd15_text2image", schema=SchemaSource.from_url(sim.url))
    job_id = str(uuid.uuid4())
    ComfyClient(sim.url).queue_prompt(prepared.prompt, prompt_id=job_id, client_id="lost")
    workers.start(sim)

    result = farm.submit(prepared, job_id=job_id).wait(30)

    assert result.status == "succeeded" and len(result.outputs) == 1
    assert executions(sim, job_id) == 1
    stats = sim_stats(sim)
    assert stats["prompts_accepted"] == 1, "the prompt was POSTed again"
    assert job_id not in stats["cached_runs"]


def test_a_worker_sweeps_stale_temp_files_when_it_starts(
    workers: WorkerFactory, start_sim, out_dir: Path
) -> None:
    """A temp file a killed worker left two hours ago is removed when a worker starts; one
    written a moment ago (a live copy) stays."""
    stale = out_dir / "some-job" / f"{TEMP_PREFIX}killed-mid-copy"
    stale.parent.mkdir()
    stale.write_bytes(b"x" * 4096)
    two_hours_ago = stale.stat().st_mtime - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    fresh = out_dir / f"{TEMP_PREFIX}being-written"
    fresh.write_bytes(b"y")
    sim = start_sim("--step-ms", "1", "--load-ms", "0")

    workers.start(sim)

    wait_until(lambda: not stale.exists(), 10, "the stale temp file to be swept")
    assert fresh.exists()
