"""The throughput benchmark on ComfyUI servers given by URL (real GPUs, or simulators by URL).

Nothing is started: the servers are used as they are. Their busy time comes from ComfyUI's own
record, the history of each prompt the mode ran: ``execution_start`` to ``execution_success``
(or ``_error``/``_interrupted``), both stamped by ComfyUI in milliseconds. A prompt whose every
node came from the cache (``execution_cached`` lists them all) counts as a cached run. Only the
mode's own prompt ids are read, so other traffic on a shared server is not counted (but does
show up as busy time the benchmark cannot see: use dedicated servers).

Jobs come from ``--workflow`` (a library name or a file, API or UI format; default the shipped
SD 1.5 text-to-image) with ``--param``/``--set``, prepared and validated against the first
server's ``/object_info``. Each job gets a fresh seed (its ``seed`` parameter, else every literal
``seed``/``noise_seed`` input), so ComfyUI's cache serves none of them; a workflow without a
seed repeats one prompt and the warning says so.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO

from comfyfarm.comfy.client import ComfyClient
from comfyfarm.comfy.errors import ComfyError
from comfyfarm.workflows import PreparedJob, SchemaSource, load_workflow, prepare_jobs
from comfyfarm.workflows.prepare import workflow_params
from comfyfarm.workflows.repeats import repeat_warning, seed_targets
from comfyfarm_bench.timeline import Run

DEFAULT_WORKFLOW = "sd15_text2image"
_SEED_SPACE = 1 << 48


def run_from_history(prompt_id: str, entry: Mapping[str, Any]) -> Run | None:
    """The busy span of one finished prompt from its history entry (None without timestamps)."""
    status = entry.get("status")
    messages = status.get("messages") if isinstance(status, Mapping) else None
    start = end = None
    cached: list[str] = []
    for message in messages if isinstance(messages, list) else []:
        if not (isinstance(message, list) and len(message) == 2):
            continue
        name, data = message
        if not isinstance(data, Mapping):
            continue
        if name == "execution_start":
            start = data.get("timestamp")
        elif name == "execution_cached":
            nodes = data.get("nodes")
            cached = [str(node) for node in nodes] if isinstance(nodes, list) else []
        elif name in ("execution_success", "execution_error", "execution_interrupted"):
            end = data.get("timestamp")
    if not isinstance(start, int | float) or not isinstance(end, int | float):
        return None
    prompt = entry.get("prompt")
    nodes = prompt[2] if isinstance(prompt, list) and len(prompt) > 2 else {}
    every_node_cached = bool(nodes) and set(map(str, nodes)) <= set(cached)
    return Run(prompt_id, start / 1000, end / 1000, cached=every_node_cached)


class RemoteFleet:
    """ComfyUI servers by URL, with the same ``urls``/``reset_stats``/``runs_for`` as ``Fleet``."""

    def __init__(self, urls: Sequence[str]) -> None:
        if not urls:
            raise ValueError("give at least one --comfy-url")
        self._clients = [ComfyClient(url.rstrip("/"), timeout=30.0) for url in urls]

    @property
    def urls(self) -> list[str]:
        return [client.base_url for client in self._clients]

    def __len__(self) -> int:
        return len(self._clients)

    def reset_stats(self) -> None:
        """Nothing to reset: each mode reads only its own prompts."""

    def runs_for(self, prompt_ids: Iterable[str]) -> list[list[Run]]:
        """Each server's runs among ``prompt_ids`` (by history), ordered by start."""
        wanted = set(prompt_ids)
        fleet: list[list[Run]] = []
        for client in self._clients:
            runs = []
            for prompt_id in sorted(wanted):
                try:
                    history = client.get_history(prompt_id)
                except ComfyError:
                    continue
                run = None if history is None else run_from_history(prompt_id, history.raw)
                if run is not None:
                    runs.append(run)
            wanted -= {run.prompt_id for run in runs}  # each prompt ran on one server
            fleet.append(sorted(runs, key=lambda run: run.start))
        return fleet

    def close(self) -> None:
        for client in self._clients:
            client.close()


def workflow_jobs(
    workflow: str | None,
    count: int,
    *,
    schema_url: str,
    params: Sequence[str] = (),
    sets: Sequence[str] = (),
    rng: random.Random | None = None,
    log: TextIO | None = None,
) -> list[PreparedJob]:
    """``count`` jobs of ``workflow``, each with a fresh seed (see the module docstring)."""
    if count < 1:
        raise ValueError("count must be at least 1")
    log = log or sys.stderr
    loaded = load_workflow(workflow or DEFAULT_WORKFLOW)
    schema = SchemaSource.from_url(schema_url)
    base = (rng or random.Random()).randrange(_SEED_SPACE)
    seeds = f"{base}..{base + count - 1}"
    trial = prepare_jobs(loaded, schema=schema, params=params, sets=sets)[0]
    given = {text.split("=", 1)[0].strip() for text in (*params, *sets)}
    named = workflow_params(loaded, trial.prompt, schema).params
    if "seed" in named and "seed" not in given:
        sweeps = [f"seed={seeds}"]
    else:
        targets = [t for t in seed_targets(trial.prompt) if t not in given]
        sweeps = [f"{target}={seeds}" for target in targets]
    if sweeps:
        jobs = prepare_jobs(loaded, schema=schema, params=params, sets=sets, sweeps=sweeps,
                            zip_sweeps=True)  # fmt: skip
    else:
        jobs = prepare_jobs(loaded, schema=schema, params=params, sets=sets, count=count)
    warning = repeat_warning([job.prompt for job in jobs], [job.params for job in jobs])
    if warning:
        print(warning, file=log)
    return jobs


def mean_busy_ms(fleet_runs: Sequence[Sequence[Run]]) -> float:
    """Mean busy milliseconds of the executed (not cached) runs; 0.0 when there are none."""
    spans = [run.seconds for runs in fleet_runs for run in runs if not run.cached]
    return 1000 * sum(spans) / len(spans) if spans else 0.0
