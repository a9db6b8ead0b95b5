"""`comfyfarm compose --gpus …` merged over docker-compose.yml, and Redis's password kept off argv.

The generated file is merged as ``docker compose -f docker-compose.yml -f generated`` would
(compose_kit); Redis is started from the compose file's own command script with a real
redis-server, and its /proc cmdline is checked.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from compose_kit import ROOT, command_of, mounts_of, resolved_config
from test_ops_compose import ENV, pairs, parse_cli

from comfyfarm.compose import ComposeSpecError, compose_override, parse_gpus


def generate(tmp_path: Path, *args: str) -> Path:
    """Run the real CLI and keep its stdout as the override file."""
    done = subprocess.run(
        [sys.executable, "-P", "-m", "comfyfarm", "compose", *args],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    target = tmp_path / "docker-compose.gpus.yml"
    target.write_text(done.stdout)
    return target


@pytest.fixture(scope="module")
def merged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    override = generate(tmp_path_factory.mktemp("gpus"), "--gpus", "0,1,2,3")
    services: dict[str, dict[str, Any]] = resolved_config(dict(ENV), (override,))["services"]
    return services


def test_generated_file_is_yaml_with_one_pair_per_gpu(tmp_path: Path) -> None:
    """The output parses as YAML and names comfyui-gpuK and worker-gpuK for every listed GPU."""
    raw = yaml.safe_load(generate(tmp_path, "--gpus", "0,1,2").read_text())
    names = {f"{kind}-gpu{k}" for kind in ("comfyui", "worker") for k in range(3)}
    assert set(raw["services"]) == names
    assert set(raw["volumes"]) == {"comfyui-gpu0", "comfyui-gpu1", "comfyui-gpu2"}


def test_merged_pairs_bind_each_worker_to_its_comfyui_and_gpu(
    merged: dict[str, dict[str, Any]],
) -> None:
    """After the merge every worker-gpuK talks to comfyui-gpuK, which reserves GPU K only."""
    found = {name: host for name, host in pairs(merged).items() if "gpu" in name}
    assert found == {f"worker-gpu{k}": f"comfyui-gpu{k}" for k in range(4)}
    for k in range(4):
        devices = merged[f"comfyui-gpu{k}"]["deploy"]["resources"]["reservations"]["devices"]
        assert [device["device_ids"] for device in devices] == [[str(k)]]
        assert (f"comfyui-gpu{k}", "/root") in mounts_of(merged[f"comfyui-gpu{k}"])
        _, args = parse_cli(command_of(merged[f"worker-gpu{k}"]))
        assert args.name == f"gpu{k}"


def test_generated_gpu0_pair_equals_the_base_files(tmp_path: Path) -> None:
    """The generator's gpu0 pair is the base file's, so the two cannot drift apart."""
    base = resolved_config(dict(ENV))["services"]
    merged = resolved_config(dict(ENV), (generate(tmp_path, "--gpus", "0"),))["services"]
    for name in ("comfyui-gpu0", "worker-gpu0"):
        assert merged[name] == base[name], name


def test_capability_is_announced_by_every_generated_worker(tmp_path: Path) -> None:
    """--capability sdxl reaches every generated worker's command."""
    override = generate(tmp_path, "--gpus", "0,1", "--capability", "sdxl")
    services = resolved_config(dict(ENV), (override,))["services"]
    for k in range(2):
        _, args = parse_cli(command_of(services[f"worker-gpu{k}"]))
        assert "sdxl" in args.capability


def test_no_secret_in_the_generated_file(tmp_path: Path) -> None:
    """The override holds variable references, never a password value."""
    text = generate(tmp_path, "--gpus", "0,1").read_text()
    assert "${REDIS_PASSWORD:?" in text and ENV["REDIS_PASSWORD"] not in text


@pytest.mark.parametrize("gpus", ["", "0,0", "a;b", "0,rm -rf"])
def test_bad_gpu_lists_are_refused_with_one_line(gpus: str) -> None:
    """A bad --gpus value exits 2 with one line naming the option, no traceback."""
    done = subprocess.run(
        [sys.executable, "-P", "-m", "comfyfarm", "compose", "--gpus", gpus],
        capture_output=True, text=True, check=False, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("error: --gpus") and "Traceback" not in done.stderr
    with pytest.raises(ComposeSpecError):
        compose_override(parse_gpus(gpus))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_redis_command_takes_the_password_from_stdin_not_argv(tmp_path: Path) -> None:
    """The compose file's redis script starts a redis that needs the password, absent from argv."""
    [shell, flag, script] = command_of(resolved_config(dict(ENV))["services"]["redis"])
    port = _free_port()
    # A redis-server on PATH that adds a test port and directory to what the script passes.
    wrapper = tmp_path / "bin" / "redis-server"
    wrapper.parent.mkdir()
    real = shutil.which("redis-server")
    wrapper.write_text(
        f'#!/bin/sh\nexec {real} "$@" --port {port} --bind 127.0.0.1 --dir {tmp_path}\n'
    )
    wrapper.chmod(0o755)
    env = {
        "PATH": f"{wrapper.parent}:{os.environ['PATH']}",
        "REDIS_PASSWORD": ENV["REDIS_PASSWORD"],
    }
    process = subprocess.Popen(
        [shell, flag, script], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        client = redis.Redis(port=port, password=ENV["REDIS_PASSWORD"], socket_timeout=2)
        deadline = time.monotonic() + 10
        while True:
            try:
                assert client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis did not start"
                time.sleep(0.05)
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port, socket_timeout=2).set("k", "v")
        cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes().decode()
        assert "redis-server" in cmdline and ENV["REDIS_PASSWORD"] not in cmdline
        assert client.config_get("appendonly")["appendonly"] == "yes"
    finally:
        process.terminate()
        process.wait(timeout=10)
