"""`comfyfarm demo`: the whole farm on one machine with nothing but comfyfarm installed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.timeout(180)
def test_demo_runs_a_sweep_end_to_end_with_embedded_services(tmp_path: Path) -> None:
    """With no broker configured, the demo starts valkey, simulators, workers, Flower and the
    gateway (printing COMFY_BASE_URL and the token), runs every job of the sweep on both
    workers, prints where the images are, and stops it all."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMFYFARM_")}
    env["COMFYFARM_STORAGE_URL"] = (tmp_path / "out").as_uri()
    done = subprocess.run(
        [sys.executable, "-P", "-m", "comfyfarm", "demo", "--exit", "--jobs", "4",
         "--step-ms", "5"],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=170,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "embedded Redis-compatible server" in out
    assert re.search(r"Flower at http://127\.0\.0\.1:\d+", out)
    assert re.search(r"export COMFY_BASE_URL=http://127\.0\.0\.1:\d+\n", out)
    assert re.search(r"export COMFY_API_KEY=\S{16,}\n", out)
    succeeded = re.findall(r"job [0-9a-f-]{36}: succeeded on (demo\d)", out)
    assert len(succeeded) == 4
    images = sorted((tmp_path / "out").glob("*/9_0_*.png"))
    assert len(images) == 4
    assert all(image.read_bytes().startswith(b"\x89PNG") for image in images)
    assert "stopping the farm" in out
