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
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "embedded Redis-compatible server" in out
    assert (tmp_path / ".comfyfarm" / "valkey" / "appendonlydir").is_dir()  # it persists
    assert re.search(r"Flower at http://127\.0\.0\.1:\d+", out)
    assert re.search(r"export COMFY_BASE_URL=http://127\.0\.0\.1:\d+\n", out)
    assert re.search(r"export COMFY_API_KEY=\S{16,}\n", out)
    succeeded = re.findall(r"job [0-9a-f-]{36}: succeeded on (demo\d)", out)
    assert len(succeeded) == 4
    images = sorted((tmp_path / "out").glob("*/9_0_*.png"))
    assert len(images) == 4
    assert all(image.read_bytes().startswith(b"\x89PNG") for image in images)
    assert "stopping the farm" in out


def _answers(url: str) -> bool:
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "", parts.port or 80), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.timeout(180)
@pytest.mark.parametrize("signum", [15, 1], ids=["SIGTERM", "SIGHUP"])
def test_demo_serve_prints_exports_and_stops_everything_on_a_signal(
    tmp_path: Path, signum: int
) -> None:
    """`demo --serve` needs no terminal, prints the export lines that make another shell see the
    same farm, and on SIGTERM or SIGHUP stops Valkey, simulators and workers with it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMFYFARM_")}
    env["COMFYFARM_STORAGE_URL"] = (tmp_path / "out").as_uri()
    demo = subprocess.Popen(
        [sys.executable, "-P", "-m", "comfyfarm", "demo", "--serve", "--jobs", "1",
         "--step-ms", "5", "--no-flower"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, cwd=tmp_path,
    )  # fmt: skip
    assert demo.stdout is not None
    lines: list[str] = []
    for line in demo.stdout:
        lines.append(line)
        if "serving until stopped" in line:
            break
    text = "".join(lines)
    exports = dict(re.findall(r"export (COMFYFARM_\w+)=(\S+)", text))
    sims = re.search(r"simulated ComfyUI instance\(s\): (.+)", text)
    assert sims and "COMFYFARM_BROKER_URL" in exports, text
    other_shell = {**{k: v for k, v in env.items() if k != "COMFYFARM_STORAGE_URL"}, **exports}
    status = subprocess.run(
        [sys.executable, "-P", "-m", "comfyfarm", "status"], env=other_shell,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert status.returncode == 0 and "2 can take jobs" in status.stdout, status.stdout
    demo.send_signal(signum)
    rest = demo.stdout.read()
    demo.stdout.close()
    assert demo.wait(timeout=60) != 0 or "stopping the farm" in rest
    assert not _answers(exports["COMFYFARM_BROKER_URL"])
    assert not any(_answers(url.strip()) for url in sims[1].split(","))


def test_demo_with_a_stale_broker_url_says_so_in_one_line() -> None:
    """A COMFYFARM_BROKER_URL that answers nothing: one line naming it, exit 3, no traceback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMFYFARM_")}
    env["COMFYFARM_BROKER_URL"] = "redis://:pw@127.0.0.1:9/0"
    done = subprocess.run(
        [sys.executable, "-P", "-m", "comfyfarm", "demo", "--exit"],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 3
    assert "COMFYFARM_BROKER_URL=redis://:***@127.0.0.1:9/0 does not answer" in done.stderr
    assert "Traceback" not in done.stderr
