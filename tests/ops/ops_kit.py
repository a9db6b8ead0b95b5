"""Helpers for the ops tests: the farm's processes started the way an operator starts them.

Every process is a real subprocess (``python -m comfyfarm worker|flower``) talking to a real,
password-protected Valkey and to simulators over loopback; readiness is the line each prints.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import requests

from comfyfarm.demo import FLOWER_READY
from comfyfarm.services import WORKER_READY, ManagedProcess
from comfyfarm.workflows import PreparedJob, SchemaSource, prepare_jobs

REDIS_PASSWORD = "s3cret"
START_TIMEOUT = 60.0

T = TypeVar("T")


def farm_env(redis_url: str, *, key_prefix: str, storage: Path, **extra: str) -> dict[str, str]:
    """The environment of a farm process: this interpreter's env plus the farm's variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMFYFARM_", "FLOWER_"))}
    env.update(
        COMFYFARM_BROKER_URL=redis_url,
        COMFYFARM_KEY_PREFIX=key_prefix,
        COMFYFARM_STORAGE_URL=storage.as_uri(),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def worker_process(
    env: dict[str, str], comfy_url: str, name: str, *, ready_mark: str = WORKER_READY
) -> ManagedProcess:
    """``comfyfarm worker`` bound to ``comfy_url`` (not started); ``start()`` returns once it
    prints a line containing ``ready_mark``."""
    argv = [sys.executable, "-P", "-m", "comfyfarm", "worker", "--comfy-url", comfy_url,
            "--name", name, "--loglevel", "INFO"]  # fmt: skip
    return ManagedProcess(
        argv, ready=lambda line: ready_mark in line, name=f"worker {name}", env=env
    )


def flower_process(env: dict[str, str], port: int, *extra: str) -> ManagedProcess:
    """``comfyfarm flower`` on loopback ``port`` (not started yet)."""
    argv = [sys.executable, "-P", "-m", "comfyfarm", "flower", "--port", str(port), *extra]
    return ManagedProcess(argv, ready=lambda line: FLOWER_READY in line, name="flower", env=env)


def node_name(name: str) -> str:
    """The Celery node name of worker ``name`` on this host (``--hostname NAME@%h``)."""
    return f"{name}@{socket.gethostname()}"


def wait_for(check: Callable[[], T | None], *, timeout: float, what: str) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout``.

    For state only observable by asking (Flower's API, a log line): there is no event to await.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def output_of(process: ManagedProcess) -> str:
    return "".join(process.output)


def sd15_job(comfy_url: str, *params: str) -> PreparedJob:
    """One job of the shipped SD1.5 text2image workflow, validated against ``comfy_url``."""
    schema = SchemaSource.from_url(comfy_url)
    return prepare_jobs("sd15_text2image", schema=schema, params=list(params))[0]


def executions(comfy_url: str) -> int:
    """How many prompts the simulator has executed so far."""
    stats = requests.get(f"{comfy_url}/_sim/stats", timeout=5).json()
    return sum(stats["executions"].values())
