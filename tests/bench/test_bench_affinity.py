"""``comfyfarm bench affinity`` on a small fleet: one record per mode with the promised fields,
and fewer checkpoint loads with affinity than with the shared queue (real simulators, Valkey
and workers)."""

from __future__ import annotations

import json
from pathlib import Path

from comfyfarm_bench.affinity import MODES, format_table, run_affinity, zipf_jobs


def test_zipf_jobs_favour_the_first_checkpoint() -> None:
    """The most popular checkpoint is asked for most often, every job loads one of them."""
    jobs = zipf_jobs(200, ["a.safetensors", "b.safetensors", "c.safetensors"])
    names = [job.prompt["4"]["inputs"]["ckpt_name"] for job in jobs]
    assert set(names) <= {"a.safetensors", "b.safetensors", "c.safetensors"}
    assert names.count("a.safetensors") > names.count("c.safetensors")


def test_affinity_loads_fewer_checkpoints_than_the_shared_queue(tmp_path: Path) -> None:
    """24 jobs of 3 checkpoints on 2 GPUs: both modes finish every job; affinity loads less."""
    records = run_affinity(instances=2, jobs=24, models=3, job_ms=100.0, load_ms=500.0,
                           workdir=tmp_path, timeout=300.0)  # fmt: skip
    print(format_table(records))
    assert [r["mode"] for r in records] == list(MODES)
    for record in records:
        json.dumps(record)
        assert record["failed"] == 0
        assert {"model_loads", "throughput", "wait_p50", "wait_p99"} <= set(record)
    shared, affinity = records
    assert affinity["model_loads"] < shared["model_loads"]
