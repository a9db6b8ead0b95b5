"""Mode ``native``: every prompt POSTed straight into each ComfyUI's own queue, the ideal for
the fleet (ComfyUI starts the next prompt the moment one ends).

One thread per instance: connect the WebSocket, POST the instance's share of the prompts (all
up front; with ``serial`` one at a time), and when an ``executing {node: null}`` (or error)
event names one of ours, read its history. A job's result is "available" once that history
answer is in: ``submitted_at`` is just before its POST, ``done_at`` just after the history.
"""

from __future__ import annotations

import threading
import time
import uuid

from comfyfarm.comfy import events as ev
from comfyfarm.comfy.client import ComfyClient
from comfyfarm.comfy.errors import ComfyError
from comfyfarm.comfy.ws import EventStream
from comfyfarm.workflows import PreparedJob
from comfyfarm_bench.prompts import deal
from comfyfarm_bench.record import JobTiming, ModeRun, run_threads

RECEIVE_SLICE = 1.0


def finished_prompt(event: ev.Event) -> tuple[str, bool] | None:
    """(prompt id, succeeded) when ``event`` ends a prompt, else None."""
    if isinstance(event, ev.Executing) and event.node is None and event.prompt_id:
        return event.prompt_id, True
    if isinstance(event, ev.ExecutionError | ev.ExecutionInterrupted):
        return event.prompt_id, False
    return None


def run_native(
    urls: list[str], jobs: list[PreparedJob], *, serial: bool = False, timeout: float = 600.0
) -> ModeRun:
    """Run ``jobs`` dealt round-robin over ``urls``; see the module docstring."""
    record = ModeRun("native", started_at=time.time(), requested=len(jobs))
    deadline = time.monotonic() + timeout
    threads = [
        threading.Thread(
            target=_instance, args=(url, share, record, serial, deadline), name=f"native-{index}"
        )
        for index, (url, share) in enumerate(zip(urls, deal(jobs, len(urls)), strict=True))
    ]
    return run_threads(record, threads)


def _instance(
    url: str, share: list[PreparedJob], record: ModeRun, serial: bool, deadline: float
) -> None:
    client_id = f"bench-native-{uuid.uuid4()}"
    pending: dict[str, JobTiming] = {}
    with ComfyClient(url) as client, EventStream(url, client_id) as stream:
        try:
            for job in share:
                timing = JobTiming(str(uuid.uuid4()), submitted_at=time.time())
                pending[timing.job_id] = timing
                client.queue_prompt(job.prompt, prompt_id=timing.job_id, client_id=client_id)
                if serial:
                    _collect(client, stream, pending, record, deadline)
            _collect(client, stream, pending, record, deadline)
        except (ComfyError, TimeoutError) as exc:
            for timing in pending.values():
                timing.error = f"{type(exc).__name__}: {exc}"
                record.add(timing)


def _collect(
    client: ComfyClient,
    stream: EventStream,
    pending: dict[str, JobTiming],
    record: ModeRun,
    deadline: float,
) -> None:
    """Read events until every pending prompt has ended (its timing then goes to ``record``)."""
    while pending:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(pending)} native prompts still unfinished at the deadline")
        event = stream.receive(RECEIVE_SLICE)
        ended = None if event is None else finished_prompt(event)
        if ended is None or ended[0] not in pending:
            continue
        timing = pending.pop(ended[0])
        history = client.get_history(timing.job_id)
        timing.done_at = time.time()
        timing.ok = ended[1] and history is not None and history.succeeded
        if not timing.ok:
            timing.error = "failed on ComfyUI" if history is not None else "no history"
        record.add(timing)
