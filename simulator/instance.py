"""The simulator instance: its parts and the worker loop that runs queued prompts.

The routes (``routes_*``) get the instance they serve from here; ``app`` wires them into the
aiohttp application, so imports point one way: app → routes → instance.

One prompt executes at a time (like ComfyUI's prompt_worker). Around each job the worker applies
the job faults (crash, hang, dropped sockets, node errors, unsafe output names), records the run
for /_sim/stats and, after the job, any pending POST /free request.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from comfyfarm.simulator.accounting import Accounting
from comfyfarm.simulator.config import SimConfig
from comfyfarm.simulator.console_log import ConsoleLog
from comfyfarm.simulator.executor import PromptExecutor, RunReport
from comfyfarm.simulator.faults import FaultTable
from comfyfarm.simulator.files import StorageRoots
from comfyfarm.simulator.gpu import SimulatedGpu
from comfyfarm.simulator.job_faults import JobFaults
from comfyfarm.simulator.prompt_queue import PromptQueue, QueueItem
from comfyfarm.simulator.schema import NodeSchemas
from comfyfarm.simulator.ws_hub import Hub, ws_bomb

log = logging.getLogger(__name__)

CRASH_EXIT_CODE = 70


class Simulator:
    """Everything one simulated ComfyUI holds in memory (lost on restart, like ComfyUI's)."""

    def __init__(self, config: SimConfig, root: Path, *, scratch: Path | None = None) -> None:
        self.config = config
        self.scratch = scratch  # a temporary root to delete on exit, crashes included
        self.roots = StorageRoots(root)
        self.schemas = NodeSchemas(config.models, self.roots, models_dir=config.models_dir)
        self.hub = Hub()
        self.console = ConsoleLog()
        self.queue = PromptQueue(self._queue_updated)
        self.gpu = SimulatedGpu(config.timing)
        self.faults = FaultTable(seed=config.fault_seed, random_rate=config.fault_rate)
        if config.fault_kinds:
            self.faults.random_kinds = config.fault_kinds
        for name, spec in config.faults.items():
            self.faults.arm(name, spec)
        self.accounting = Accounting()
        self._background: set[asyncio.Future[None]] = set()
        self.executor = PromptExecutor(
            hub=self.hub,
            schemas=self.schemas,
            roots=self.roots,
            gpu=self.gpu,
            previews=config.previews,
        )
        self.number = 0  # POST /prompt counter, consumed by rejected prompts too
        self.jobs_started = 0
        self.busy = False
        self._pending_free: dict[str, bool] = {}

    def _queue_updated(self) -> None:
        self.hub.send_sync("status", {"status": self.queue.status()})

    def interrupt(self, prompt_id: str | None = None) -> None:
        """Global interrupt, or only when ``prompt_id`` is the running prompt."""
        if prompt_id:
            if not any(item.prompt_id == prompt_id for item in self.queue.running_items()):
                log.info("prompt %s is not running, skipping interrupt", prompt_id)
                return
        self.executor.interrupt_requested = True

    def request_free(self, *, unload_models: bool, free_memory: bool) -> None:
        """POST /free: applied now when idle, else after the running prompt."""
        if unload_models:
            self._pending_free["unload_models"] = True
        if free_memory:
            self._pending_free["free_memory"] = True
        if not self.busy:
            self._apply_free()

    def _apply_free(self) -> None:
        flags, self._pending_free = self._pending_free, {}
        free_memory = flags.get("free_memory", False)
        if flags.get("unload_models", free_memory):
            self.gpu.unload()
        if free_memory:
            self.executor.reset()

    async def run_worker(self) -> None:
        while True:
            item_id, item = await self.queue.get()
            self.busy = True
            try:
                await self._run_job(item_id, item)
            finally:
                self.busy = False
                if self._pending_free:
                    self._apply_free()

    async def _run_job(self, item_id: int, item: QueueItem) -> None:
        self.jobs_started += 1
        job, timers = self._job_faults()
        start = time.time()
        extra_data = {**item.extra_data, **item.sensitive}
        self.console.write(f"[sim] running prompt {item.prompt_id}")
        try:
            report = await self.executor.execute(
                item.prompt, item.prompt_id, extra_data, item.outputs, job
            )
        except Exception:  # a simulator bug must not stop the queue
            log.exception("prompt %s crashed the simulated executor", item.prompt_id)
            report = RunReport(
                {"outputs": {}, "meta": {}},
                {"status_str": "error", "completed": False, "messages": []},
                "error",
                0,
            )
        finally:
            for timer in timers:
                timer.cancel()
        end = time.time()
        self.queue.task_done(item_id, report.history_result, report.status)
        self._log_outcome(report, end - start)  # after task_done, as ComfyUI's prompt_worker
        if self.hub.client_id is not None:
            self.hub.send_sync(
                "executing", {"node": None, "prompt_id": item.prompt_id}, self.hub.client_id
            )
        self.accounting.record_run(item.prompt_id, start, end, report.outcome, report.nodes_started)

    def _log_outcome(self, report: RunReport, seconds: float) -> None:
        """The lines ComfyUI prints after a prompt: the banner of a failed node, the time."""
        for event, data in report.status.get("messages", []):
            if event == "execution_error":
                self.console.write("!!! Exception during processing !!! " + str(
                    data.get("exception_message", "")).strip())  # fmt: skip
        self.console.write(f"Prompt executed in {seconds:.2f} seconds")

    def _job_faults(self) -> tuple[JobFaults, list[asyncio.TimerHandle]]:
        loop = asyncio.get_running_loop()
        timers = []
        crash = self.faults.check("crash")
        if crash is not None:
            timers.append(
                loop.call_later(float(crash["after_ms"]) / 1000, self.exit, CRASH_EXIT_CODE)
            )
        drop = self.faults.check("drop_ws")
        if drop is not None:
            timers.append(loop.call_later(float(drop["after_ms"]) / 1000, self._drop_sockets))
        bomb = self.faults.check("ws_bomb")
        if bomb is not None:
            loop.call_later(float(bomb["after_ms"]) / 1000, self._start_ws_bomb, bomb)
        hang = self.faults.check("hang")
        evil = self.faults.check("evil_output")
        job = JobFaults(
            node_error=self.faults.check("node_error"),
            hang_after_ms=float(hang["after_ms"]) if hang is not None else None,
            evil_mode=str(evil["mode"]) if evil is not None else None,
        )
        return job, timers

    def exit(self, code: int = 0) -> None:
        """Leave at once, like a killed ComfyUI: no close frames, no answers to pending requests."""
        if code == CRASH_EXIT_CODE:
            sys.stderr.write("comfyfarm-sim: simulated crash (fault 'crash')\n")
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
        sys.stderr.flush()
        os._exit(code)

    def _start_ws_bomb(self, params: dict[str, Any]) -> None:
        client = self.hub.clients.get(self.hub.client_id or "")
        if client is not None and client.request.transport is not None:
            bomb = ws_bomb(client.request.transport, int(params["length"]), params["trickle_ms"])
            self._background.add(asyncio.ensure_future(bomb))

    def _drop_sockets(self) -> None:
        count = self.hub.drop_all()
        log.warning("fault drop_ws: cut %d WebSocket(s)", count)

    def stats(self) -> dict[str, Any]:
        fired = {name: fault.fired for name, fault in self.faults.faults.items()}
        for name, count in self.faults.random_fired.items():
            fired[name] = fired.get(name, 0) + count
        snapshot = self.accounting.snapshot(
            queue_remaining=self.queue.remaining, faults_fired=fired
        )
        snapshot["jobs_started"] = self.jobs_started  # includes a hung or running job
        snapshot["model_loads"] = self.gpu.model_loads
        snapshot["loaded_checkpoint"] = self.gpu.loaded_checkpoint
        return snapshot
