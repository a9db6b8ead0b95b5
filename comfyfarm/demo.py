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
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

from comfyfarm.services import (
    GatewayProcess,
    ManagedProcess,
    RedisServer,
    SimulatorProcess,
    free_port,
    worker_process,
)

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
        if not env.get("COMFYFARM_BROKER_URL"):
            redis = stack.enter_context(RedisServer())
            env["COMFYFARM_BROKER_URL"] = redis.url
            print(f"embedded Redis-compatible server (valkey) at {redis.url}")
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
        yield farm


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def run_demo(args: argparse.Namespace) -> int:
    from comfyfarm.producer import Farm
    from comfyfarm.producer.cli import wait_all
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
        if sys.stdin.isatty() and not args.exit:
            print("everything keeps running; press Ctrl-C to stop it all")
            with contextlib.suppress(KeyboardInterrupt, EOFError):
                while True:
                    input()
        print("stopping the farm")
    return code
