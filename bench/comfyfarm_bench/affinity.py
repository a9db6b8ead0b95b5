"""``comfyfarm bench affinity``: jobs sent where their model is loaded vs one shared queue.

``instances`` simulated GPUs that take ``load_ms`` to load a checkpoint and ``job_ms`` per job
(20 sampler steps); ``models`` checkpoints with Zipf popularity (the k-th most popular is asked
for in proportion to 1/k); ``jobs`` jobs handed in at once. Both modes run on the same
simulators, each with a fresh Valkey and fresh workers: ``shared`` (every job on the shared
queue) and ``affinity`` (``COMFYFARM_AFFINITY=1``: each job on its checkpoint's queue, see
``comfyfarm.worker.affinity``). Per mode: ``model_loads`` (the simulators' count of checkpoint
loads), ``throughput`` (jobs/s from the submit to the last result), ``wait_p50``/``wait_p99``
(s from the submit to the prompt starting on a GPU, from the simulators' timelines).
"""

from __future__ import annotations

import contextlib
import random
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import requests

from comfyfarm.producer import Farm
from comfyfarm.services import RedisServer, SimulatorProcess
from comfyfarm.tasks.registry import list_workers
from comfyfarm.tasks.routing import model_queue
from comfyfarm.tasks.settings import Settings
from comfyfarm.workflows import PreparedJob
from comfyfarm_bench.farm import farm_environment
from comfyfarm_bench.fleet import start_concurrently, stop_all
from comfyfarm_bench.prompts import fresh_jobs
from comfyfarm_bench.workers import WorkerPool

STEPS = 20
MODES = ("shared", "affinity")
READY_TIMEOUT = 120.0


def checkpoint_names(count: int) -> list[str]:
    return [f"model{index}.safetensors" for index in range(count)]


def zipf_jobs(count: int, models: list[str], seed: int = 15) -> list[PreparedJob]:
    """``count`` fresh jobs, each loading a checkpoint drawn with Zipf (1/k) popularity."""
    rng = random.Random(seed)
    weights = [1 / (rank + 1) for rank in range(len(models))]
    jobs = []
    for job in fresh_jobs(count, rng=rng):
        ckpt = rng.choices(models, weights)[0]
        prompt = {node_id: _with_checkpoint(node, ckpt) for node_id, node in job.prompt.items()}
        jobs.append(replace(job, prompt=prompt, params={**job.params, "ckpt_name": ckpt}))
    return jobs


def _with_checkpoint(node: dict[str, Any], ckpt: str) -> dict[str, Any]:
    inputs = dict(node.get("inputs", {}))
    if "ckpt_name" in inputs:
        inputs["ckpt_name"] = ckpt
    if "steps" in inputs:
        inputs["steps"] = STEPS
    return {**node, "inputs": inputs}


def run_affinity(
    *,
    instances: int = 4,
    jobs: int = 400,
    models: int = 8,
    job_ms: float = 1000.0,
    load_ms: float = 3000.0,
    workdir: Path,
    timeout: float = 1800.0,
    modes: tuple[str, ...] = MODES,
) -> list[dict[str, Any]]:
    """One record per mode (see the module docstring)."""
    names = checkpoint_names(models)
    sim_args = [
        "--step-ms", f"{job_ms / STEPS:g}", "--load-ms", f"{load_ms:g}", "--node-ms", "0",
        "--models", "checkpoints=" + ",".join(names),
    ]  # fmt: skip
    sims = [SimulatorProcess(args=sim_args) for _ in range(instances)]
    start_concurrently(sims, SimulatorProcess.start)
    try:
        urls = [sim.url for sim in sims]
        return [
            _run_mode(mode, urls, zipf_jobs(jobs, names), names, workdir / mode, timeout)
            for mode in modes
        ]
    finally:
        stop_all(sims)


def _run_mode(
    mode: str, urls: list[str], jobs: list[PreparedJob], names: list[str], workdir: Path,
    timeout: float,
) -> dict[str, Any]:  # fmt: skip
    http = requests.Session()
    for url in urls:
        http.post(f"{url}/_sim/stats/reset", timeout=30).raise_for_status()
    with RedisServer() as redis, contextlib.ExitStack() as stack:
        env = farm_environment(redis.url, workdir / "store")
        env["COMFYFARM_AFFINITY"] = "1" if mode == "affinity" else "0"
        stack.enter_context(WorkerPool(urls, env))
        farm = stack.enter_context(Farm(Settings.from_env(env)))
        _wait_for_model_queues(farm, len(urls), names)
        submitted_at = time.time()
        handles = farm.submit_many(jobs)
        failed = sum(r.status != "succeeded" for r in farm.as_completed(handles, timeout))
        elapsed = time.time() - submitted_at
    stats = [http.get(f"{url}/_sim/stats", timeout=30).json() for url in urls]
    starts: dict[str, float] = {}
    for answer in stats:
        for run in answer["timeline"]:
            starts.setdefault(run["prompt_id"], run["start"])
    waits = sorted(starts.get(h.job_id, submitted_at + elapsed) - submitted_at for h in handles)
    return {
        "mode": mode,
        "jobs": len(jobs),
        "failed": failed,
        "model_loads": sum(int(answer.get("model_loads", 0)) for answer in stats),
        "throughput": round(len(jobs) / elapsed, 3),
        "wait_p50": round(_quantile(waits, 0.5), 2),
        "wait_p99": round(_quantile(waits, 0.99), 2),
        "elapsed": round(elapsed, 1),
    }


def _wait_for_model_queues(farm: Farm, workers: int, names: list[str]) -> None:
    """Until every worker lists the model queues (its ComfyUI's checkpoints are known)."""
    wanted = {model_queue(name) for name in names}
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        live = list_workers(farm.redis, farm.settings.key_prefix)
        if len(live) >= workers and all(wanted <= set(w.queues) for w in live):
            return
        time.sleep(0.2)
    raise TimeoutError("the workers did not list their model queues in time")


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    return values[min(len(values) - 1, int(q * len(values)))]


def format_table(records: list[dict[str, Any]]) -> str:
    lines = [f"{'mode':<10}{'loads':>8}{'jobs/s':>9}{'wait p50':>10}{'wait p99':>10}{'failed':>8}"]
    for r in records:
        lines.append(
            f"{r['mode']:<10}{r['model_loads']:>8}{r['throughput']:>9.3f}"
            f"{r['wait_p50']:>10.1f}{r['wait_p99']:>10.1f}{r['failed']:>8}"
        )
    return "\n".join(lines)
