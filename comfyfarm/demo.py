"""``comfyfarm demo``: the whole farm on one machine, with nothing installed but comfyfarm.

Starts, in order: an embedded Redis-compatible server (unless ``COMFYFARM_BROKER_URL`` is set),
N simulated ComfyUI instances (or uses the real ones given by ``--comfy-url``), one worker per
ComfyUI, Flower and the Comfy API v2 gateway (``comfyfarm gateway``, with a fresh token it
prints as ``export COMFY_BASE_URL=…`` / ``export COMFY_API_KEY=…`` for comfy-sdk programs); then
submits a small sweep of the SD1.5 text2image workflow, shows progress and
prints where the images are. Everything it started stops when it ends (or on Ctrl-C).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from comfyfarm.services import (
    GatewayProcess,
    ManagedProcess,
    RedisServer,
    SimulatorProcess,
    free_port,
    worker_process,
)
from comfyfarm.tasks.redact import redact_url

FLOWER_READY = "Visit me at"
DEMO_WORKFLOW = "sd15_text2image"
GATEWAY_PORT = 8189  # comfy-api-proxy's port: the one comfy-sdk examples use
DEMO_TENANT = "demo"


@dataclass
class DemoFarm:
    """The processes of a one-machine farm, stopped in reverse order."""

    env: dict[str, str]
    comfy_urls: list[str]
    flower_url: str | None = None
    gateway_url: str | None = None
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)


@contextlib.contextmanager
def local_farm(
    *,
    sims: int,
    comfy_urls: list[str],
    step_ms: int,
    flower: bool,
    key_prefix: str = "",
    gateway: bool = False,
) -> Iterator[DemoFarm]:
    """Start (and finally stop) broker, ComfyUIs, workers, Flower and the gateway here."""
    env = dict(os.environ)
    with contextlib.ExitStack() as stack:
        if env.get("COMFYFARM_BROKER_URL"):
            check_broker(env["COMFYFARM_BROKER_URL"])
        else:
            # Persistent (AOF in .comfyfarm/valkey: a restarted demo keeps its queue and results)
            # and with a password of its own, though it listens on loopback only.
            data_dir = Path(".comfyfarm", "valkey").resolve()
            data_dir.mkdir(parents=True, exist_ok=True)
            redis = stack.enter_context(
                RedisServer(appendonly=True, data_dir=data_dir, password=secrets.token_hex(16))
            )
            env["COMFYFARM_BROKER_URL"] = redis.url
            print(f"embedded Redis-compatible server (valkey) at {redact_url(redis.url)}, "
                  f"data in {data_dir}")  # fmt: skip
        if key_prefix:
            env["COMFYFARM_KEY_PREFIX"] = key_prefix
        urls = list(comfy_urls)
        if not urls:
            for _ in range(sims):
                sim = stack.enter_context(
                    SimulatorProcess(args=["--step-ms", str(step_ms), "--load-ms", "200"])
                )
                urls.append(sim.url)
            print(f"{sims} simulated ComfyUI instance(s): {', '.join(urls)}")
        for index, url in enumerate(urls):
            stack.enter_context(worker_process(url, f"demo{index}", env))
        print(f"{len(urls)} worker(s) started, one per ComfyUI")
        farm = DemoFarm(env=env, comfy_urls=urls)
        if flower:
            port = free_port()
            stack.enter_context(
                ManagedProcess(
                    [sys.executable, "-P", "-m", "comfyfarm", "flower", "--port", str(port)],
                    ready=lambda line: FLOWER_READY in line,
                    name="flower",
                    env=env,
                )
            )
            farm.flower_url = f"http://127.0.0.1:{port}"
            print(f"Flower at {farm.flower_url}")
        if gateway:
            token = secrets.token_urlsafe(24)
            env_gateway = {**env, "COMFYFARM_API_TOKENS": f"{DEMO_TENANT}:{token}"}
            port = GATEWAY_PORT if _port_free(GATEWAY_PORT) else free_port()
            process = stack.enter_context(GatewayProcess(env=env_gateway, port=port))
            farm.gateway_url = process.url
            print(f"Comfy API v2 gateway at {process.url} (tenant {DEMO_TENANT}); for comfy-sdk:")
            print(f"  export COMFY_BASE_URL={process.url}")
            print(f"  export COMFY_API_KEY={token}")
        print_exports(env)
        yield farm


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def check_broker(url: str) -> None:
    """Fail fast, in one line, when ``COMFYFARM_BROKER_URL`` points at nothing (a stale export)."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise DemoError(
            f"COMFYFARM_BROKER_URL={redact_url(url)} does not answer ({exc}); unset it to let the "
            "demo start its own embedded Valkey"
        ) from exc
    finally:
        client.close()


class DemoError(Exception):
    """Raised when the demo cannot start (the message is the whole story)."""


def print_exports(env: dict[str, str]) -> None:
    """The lines that make another shell's ``comfyfarm`` commands talk to this farm."""
    from comfyfarm.tasks.settings import Settings

    settings = Settings.from_env(env)
    print("\nto use this farm from another shell:")
    print(f"  export COMFYFARM_BROKER_URL={settings.broker_url}")
    print(f"  export COMFYFARM_STORAGE_URL={settings.storage_url}")
    if env.get("COMFYFARM_KEY_PREFIX"):
        print(f"  export COMFYFARM_KEY_PREFIX={env['COMFYFARM_KEY_PREFIX']}")
    print(flush=True)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP end the demo like Ctrl-C does: everything it started is stopped."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_demo(args: argparse.Namespace) -> int:
    """The demo, stopped cleanly by Ctrl-C, SIGTERM or SIGHUP."""
    with stop_on_signals():
        try:
            return _run_demo(args)
        except DemoError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 3


def _run_demo(args: argparse.Namespace) -> int:
    from comfyfarm.commands.submit import wait_all
    from comfyfarm.producer import Farm
    from comfyfarm.tasks.settings import Settings
    from comfyfarm.workflows import SchemaSource, WorkflowError, prepare_jobs

    with local_farm(
        sims=args.sims,
        comfy_urls=args.comfy_url,
        step_ms=args.step_ms,
        flower=not args.no_flower,
        gateway=not getattr(args, "no_gateway", False),
    ) as local:
        settings = Settings.from_env(local.env)
        try:
            schema = SchemaSource.from_url(local.comfy_urls[0])
            if args.workflow == DEMO_WORKFLOW:
                jobs = prepare_jobs(args.workflow, schema=schema,
                                    sweeps=[f"seed=1..{args.jobs}"],
                                    params=[f"prompt={args.prompt}"])  # fmt: skip
            else:
                jobs = prepare_jobs(args.workflow, schema=schema, count=args.jobs)
        except WorkflowError as exc:
            print(
                f"error: {args.workflow} cannot run on {local.comfy_urls[0]}:\n{exc}\n"
                "(a ComfyUI without the SD1.5 model files can run --workflow empty_invert)",
                file=sys.stderr,
            )
            return 2
        with Farm(settings) as farm:
            handles = farm.submit_many(jobs)
            print(f"submitted {len(handles)} jobs of {args.workflow}; following them:")
            code = wait_all(farm, handles, argparse.Namespace(json=False, timeout=600, out=None))
        print(f"\noutputs are under {settings.storage_url}")
        if local.flower_url:
            print(f"Flower: {local.flower_url}")
        if local.gateway_url:
            print(f"Comfy API v2 gateway: {local.gateway_url}")
        if args.serve:
            print("serving until stopped (Ctrl-C, SIGTERM or SIGHUP)", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                threading.Event().wait()
        elif sys.stdin.isatty() and not args.exit:
            print("everything keeps running; press Ctrl-C to stop it all")
            with contextlib.suppress(KeyboardInterrupt, EOFError):
                while True:
                    input()
        print("stopping the farm", flush=True)
    return code
