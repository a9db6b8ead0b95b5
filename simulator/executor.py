"""Runs one prompt the way ComfyUI's ``PromptExecutor.execute_async`` does, event for event.

Per prompt: ``execution_start``, ``execution_cached`` (nodes served from the cache), then per
executed node ``progress_state`` (running) -> ``executing`` -> [progress] -> [``executed``] ->
``progress_state`` (finished); cached output nodes only re-send ``executed``. The run ends with
``execution_success``, ``execution_error`` or ``execution_interrupted``. Execution events go
to the prompt's client only (nowhere without one, except ``execution_interrupted``, which
is then broadcast). Interrupts are honoured when a node starts and at progress hooks.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from comfyfarm.simulator.faults import DEFAULTS
from comfyfarm.simulator.files import StorageRoots
from comfyfarm.simulator.gpu import SimulatedGpu
from comfyfarm.simulator.graph import DependencyCycle, ExecutionList, is_link, node_signatures
from comfyfarm.simulator.job_faults import JobFaults, disguise_outputs
from comfyfarm.simulator.node_api import NodeContext, NodeFailure, NodeResult
from comfyfarm.simulator.nodes import IMPLEMENTATIONS
from comfyfarm.simulator.progress import ProgressRegistry
from comfyfarm.simulator.schema import NodeSchemas
from comfyfarm.simulator.validation import full_type_name
from comfyfarm.simulator.ws_hub import (
    PREVIEW_IMAGE,
    PREVIEW_IMAGE_WITH_METADATA,
    Hub,
    preview_frame,
    preview_frame_with_metadata,
)

log = logging.getLogger(__name__)


class Interrupted(Exception):
    """Raised at a node start or progress hook after an interrupt (InterruptProcessingException)."""


@dataclass
class CacheEntry:
    outputs: tuple[Any, ...]
    ui: dict[str, Any] | None


@dataclass
class RunReport:
    """What the worker needs after a run: history data, outcome and how many nodes really ran."""

    history_result: dict[str, Any]
    status: dict[str, Any]
    outcome: str  # "success" | "error" | "interrupted"
    nodes_started: int


@dataclass
class _Run:
    prompt_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    client_id: str | None
    keys: dict[str, str]
    progress: ProgressRegistry
    plan: dict[str, float]
    job: JobFaults
    started: float
    messages: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    executed: list[str] = field(default_factory=list)
    ui_outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    nodes_started: int = 0


def _targets(fault: dict[str, Any], node_id: str, class_type: str) -> bool:
    """Whether a node_error fault aims at this node (an unset filter matches every node)."""
    wanted_id, wanted_class = fault.get("node_id"), fault.get("class_type")
    if wanted_id is not None and str(wanted_id) != node_id:
        return False
    return wanted_class is None or str(wanted_class) == class_type


def format_value(value: Any) -> Any:
    if value is None or isinstance(value, (int, float, bool, str)):
        return value
    return str(value)


class PromptExecutor:
    """Executes prompts one at a time and keeps ComfyUI's output cache between them."""

    def __init__(
        self,
        *,
        hub: Hub,
        schemas: NodeSchemas,
        roots: StorageRoots,
        gpu: SimulatedGpu,
        previews: bool,
    ) -> None:
        self.hub = hub
        self.schemas = schemas
        self.roots = roots
        self.gpu = gpu
        self.previews = previews
        self.cache: dict[str, CacheEntry] = {}
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.interrupt_requested = False
        self._changes = 0

    def reset(self) -> None:
        """Forget cached outputs (POST /free with free_memory)."""
        self.cache.clear()
        self.objects.clear()

    def _is_changed(self, class_type: str, inputs: dict[str, Any]) -> object:
        impl = IMPLEMENTATIONS.get(class_type)
        if impl is not None and impl.always_changed:
            self._changes += 1
            return self._changes
        if class_type == "LoadImage" and isinstance(inputs.get("image"), str):
            try:  # ComfyUI's LoadImage.IS_CHANGED hashes the file: a new upload re-executes
                return hashlib.sha256(
                    self.roots.annotated_path(inputs["image"]).read_bytes()
                ).hexdigest()
            except (OSError, ValueError):
                return "missing"
        return ""

    def _add_message(self, run: _Run, event: str, data: dict[str, Any], broadcast: bool) -> None:
        data = {**data, "timestamp": int(time.time() * 1000)}
        run.messages.append((event, data))
        if run.client_id is not None or broadcast:
            self.hub.send_sync(event, data, run.client_id)

    async def execute(
        self,
        prompt: dict[str, Any],
        prompt_id: str,
        extra_data: dict[str, Any],
        outputs: list[str],
        job: JobFaults,
    ) -> RunReport:
        self.interrupt_requested = False
        client_id = extra_data.get("client_id")
        self.hub.client_id = client_id
        keys = node_signatures(prompt, self._is_changed)
        run = _Run(
            prompt_id,
            prompt,
            extra_data,
            client_id,
            keys,
            ProgressRegistry(prompt_id, client_id, self.hub.send_sync),
            {},
            job,
            time.monotonic(),
        )
        self._add_message(run, "execution_start", {"prompt_id": prompt_id}, False)
        wanted = set(keys.values())
        self.cache = {k: v for k, v in self.cache.items() if k in wanted}
        live = {(node_id, str(node.get("class_type"))) for node_id, node in prompt.items()}
        self.objects = {k: v for k, v in self.objects.items() if k in live}
        cached_nodes = [node_id for node_id in prompt if keys[node_id] in self.cache]
        self._add_message(
            run, "execution_cached", {"nodes": cached_nodes, "prompt_id": prompt_id}, False
        )

        order = ExecutionList(prompt, self.schemas.is_output, lambda n: keys[n] in self.cache)
        for node_id in outputs:
            order.add_node(node_id)
        to_run = [n for n in order.planned() if keys[n] not in self.cache]
        run.plan = self.gpu.plan(
            {n: (prompt[n]["class_type"], prompt[n]["inputs"]) for n in to_run}
        )

        outcome = "success"
        while not order.is_empty():
            try:
                node_id = order.stage()
            except DependencyCycle as cycle:
                stuck = next(iter(order.pending))
                cycle_error: dict[str, Any] = {
                    "node_id": stuck,
                    "exception_message": str(cycle),
                    "exception_type": "DependencyCycle",
                    "traceback": [],
                    "current_inputs": {},
                }
                outcome = self._handle_error(run, cycle_error, cycle)
                break
            error, failure = await self._run_node(run, node_id)
            if error is not None:
                outcome = self._handle_error(run, error, failure)
                break
            order.complete(node_id)
        else:
            await self._hang_if_due(run)
            self._add_message(run, "execution_success", {"prompt_id": prompt_id}, False)

        self.hub.last_node_id = None
        history = {
            "outputs": {n: ui["output"] for n, ui in run.ui_outputs.items()},
            "meta": {n: ui["meta"] for n, ui in run.ui_outputs.items()},
        }
        success = outcome == "success"
        status = {
            "status_str": "success" if success else "error",
            "completed": success,
            "messages": [[event, data] for event, data in run.messages],
        }
        return RunReport(history, status, outcome, run.nodes_started)

    def _handle_error(self, run: _Run, error: dict[str, Any], ex: BaseException | None) -> str:
        node_id = error["node_id"]
        base = {
            "prompt_id": run.prompt_id,
            "node_id": node_id,
            "node_type": run.prompt[node_id]["class_type"],
            "executed": list(run.executed),
        }
        if isinstance(ex, Interrupted):
            self._add_message(run, "execution_interrupted", base, True)
            return "interrupted"
        details = {
            "exception_message": error["exception_message"],
            "exception_type": error["exception_type"],
            "traceback": error["traceback"],
            "current_inputs": error["current_inputs"],
            "current_outputs": list(run.prompt),
        }
        self._add_message(run, "execution_error", {**base, **details}, False)
        return "error"

    async def _hang_if_due(self, run: _Run) -> None:
        after = run.job.hang_after_ms
        if after is not None and (time.monotonic() - run.started) * 1000 >= after:
            log.warning("simulated hang in prompt %s", run.prompt_id)
            await asyncio.Event().wait()  # forever: a stuck GPU ignores interrupts too

    async def _checkpoint(self, run: _Run) -> None:
        await self._hang_if_due(run)
        if self.interrupt_requested:
            raise Interrupted()

    async def _run_node(
        self, run: _Run, node_id: str
    ) -> tuple[dict[str, Any] | None, BaseException | None]:
        node = run.prompt[node_id]
        class_type = node["class_type"]
        cached = self.cache.get(run.keys[node_id])
        if cached is not None:
            if run.client_id is not None:
                output = cached.ui["output"] if cached.ui else None
                data = {
                    "node": node_id,
                    "display_node": node_id,
                    "output": output,
                    "prompt_id": run.prompt_id,
                }
                self.hub.send_sync("executed", data, run.client_id)
            if cached.ui is not None:
                run.ui_outputs[node_id] = cached.ui
            run.progress.finish(node_id)
            return None, None

        run.progress.start(node_id)
        run.nodes_started += 1
        inputs: dict[str, Any] | None = None
        try:
            inputs = self._input_data(run, node_id, node)
            if run.client_id is not None:
                self.hub.last_node_id = node_id
                data = {"node": node_id, "display_node": node_id, "prompt_id": run.prompt_id}
                self.hub.send_sync("executing", data, run.client_id)
            await self._checkpoint(run)
            result = await self._call(run, node_id, class_type, inputs)
        except Interrupted as ex:
            return {"node_id": node_id}, ex
        except Exception as ex:
            exception_type = (
                ex.exception_type if isinstance(ex, NodeFailure) else full_type_name(type(ex))
            )
            error = {
                "node_id": node_id,
                "exception_message": f"{ex}\n",
                "exception_type": exception_type,
                "traceback": traceback.format_tb(ex.__traceback__),
                "current_inputs": {k: [format_value(v)] for k, v in (inputs or {}).items()},
            }
            return error, ex

        ui_entry = None
        if result.ui:
            ui = disguise_outputs(result.ui, run.job.evil_mode)
            meta = {
                "node_id": node_id,
                "display_node": node_id,
                "parent_node": None,
                "real_node_id": node_id,
            }
            ui_entry = run.ui_outputs[node_id] = {"meta": meta, "output": ui}
            if run.client_id is not None:
                data = {
                    "node": node_id,
                    "display_node": node_id,
                    "output": ui,
                    "prompt_id": run.prompt_id,
                }
                self.hub.send_sync("executed", data, run.client_id)
        self.cache[run.keys[node_id]] = CacheEntry(result.outputs, ui_entry)
        run.progress.finish(node_id)
        run.executed.append(node_id)
        return None, None

    def _input_data(self, run: _Run, node_id: str, node: dict[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, value in node["inputs"].items():
            if is_link(value):
                values[name] = self.cache[run.keys[value[0]]].outputs[int(value[1])]
            else:
                values[name] = value
        hidden = self.schemas.class_inputs(node["class_type"], fill_lists=False).get("hidden", {})
        for name, kind in hidden.items():
            if kind == "PROMPT":
                values[name] = run.prompt
            elif kind == "EXTRA_PNGINFO":
                values[name] = run.extra_data.get("extra_pnginfo")
            elif kind == "UNIQUE_ID":
                values[name] = node_id
        return values

    async def _call(
        self, run: _Run, node_id: str, class_type: str, inputs: dict[str, Any]
    ) -> NodeResult:
        impl = IMPLEMENTATIONS[class_type]
        seconds = run.plan.get(node_id, 0.0)
        state = self.objects.setdefault((node_id, class_type), {})

        async def report(value: int, total: int, preview: bytes | None) -> None:
            await self._report(run, node_id, value, total, preview)

        ctx = NodeContext(
            node_id,
            run.prompt_id,
            run.prompt,
            run.extra_data,
            self.roots,
            self.gpu,
            seconds,
            self.previews,
            state,
            report,
        )
        if not impl.paces_itself and seconds > 0:
            await asyncio.sleep(seconds)
        fault = run.job.node_error
        if fault is not None and _targets(fault, node_id, class_type):
            message = fault.get("message") or DEFAULTS["node_error"]["message"]
            kind = fault.get("exception_type") or "RuntimeError"
            raise NodeFailure(str(message), exception_type=str(kind))
        declared = self.schemas.class_inputs(class_type, fill_lists=False)
        names = {*declared.get("required", {}), *declared.get("optional", {})}
        return await impl.run(ctx, **{k: v for k, v in inputs.items() if k in names})

    async def _report(
        self, run: _Run, node_id: str, value: int, total: int, preview: bytes | None
    ) -> None:
        """ComfyUI's progress hook: interrupt check, progress_state, previews, ``progress``."""
        await self._checkpoint(run)
        run.progress.update(node_id, value, total)
        client = run.client_id
        with_metadata = self.hub.supports_preview_metadata(client)
        if preview is not None and with_metadata:
            metadata = {
                "node_id": node_id,
                "prompt_id": run.prompt_id,
                "display_node_id": node_id,
                "parent_node_id": None,
                "real_node_id": node_id,
                "image_type": "image/png",
            }
            self.hub.send_sync(
                PREVIEW_IMAGE_WITH_METADATA, preview_frame_with_metadata(preview, metadata), client
            )
        data = {"value": value, "max": total, "prompt_id": run.prompt_id, "node": node_id}
        self.hub.send_sync("progress", data, client)
        if preview is not None and not with_metadata:
            self.hub.send_sync(PREVIEW_IMAGE, preview_frame(preview), client)
