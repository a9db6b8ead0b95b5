"""A user's own modules never shadow the farm's: every part is imported as ``comfyfarm.<part>``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from farm_kit import WorkerFactory

# Each decoy stops the process that imports it, loudly: a shadowed import cannot go unnoticed.
DECOYS = ("tasks", "worker", "producer", "workflows", "simulator", "storage", "comfy")


def make_decoys(directory: Path) -> None:
    for name in DECOYS:
        (directory / f"{name}.py").write_text(
            f"raise SystemExit('decoy {name}.py was imported instead of comfyfarm.{name}')\n"
        )
    (directory / "worker").mkdir()
    (directory / "worker" / "__init__.py").write_text("raise SystemExit('decoy worker/')\n")


def test_worker_and_submit_run_from_a_directory_full_of_decoys(
    workers: WorkerFactory, start_sim, tmp_path: Path
) -> None:
    """Started from a directory holding decoy tasks.py, worker.py, producer.py, workflows.py (and a
    worker/ package), the worker serves and `comfyfarm submit --wait` completes a job."""
    decoys = tmp_path / "project"
    decoys.mkdir()
    make_decoys(decoys)
    # `python -m` without -P puts the current directory first on sys.path: the hardest case.
    comfyfarm = (sys.executable, "-m", "comfyfarm")
    sim = start_sim("--step-ms", "1", "--load-ms", "0")
    workers.start(sim, command=comfyfarm, cwd=str(decoys))
    done = subprocess.run(
        [*comfyfarm, "submit", "sd15_text2image", "--param", "seed=5", "--wait", "--json"],
        env=workers.env(), cwd=decoys, capture_output=True, text=True, timeout=120,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "decoy" not in done.stderr
    (result,) = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert result["status"] == "succeeded"
    assert result["params"]["seed"] == 5
