"""Mode ``naive``: the seed script's loop, one thread per instance — POST a prompt, wait for it
over the WebSocket, read its history, download its files via ``/view``, then the next prompt.

ComfyUI sits idle from the end of each prompt until the loop has fetched the outputs and POSTed
the next one; that gap is what this mode shows. Every job is handed in when the mode starts
(``submitted_at`` = start; with ``serial``, just before its POST); ``done_at`` is after its
files are on disk.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

from comfyfarm.comfy.client import ComfyClient
from comfyfarm.comfy.errors import ComfyError
from comfyfarm.comfy.outputs import OutputFile, collect_outputs
from comfyfarm.comfy.tracker import follow_prompt
from comfyfarm.comfy.ws import EventStream
from comfyfarm.workflows import PreparedJob
from comfyfarm_bench.prompts import deal
from comfyfarm_bench.record import JobTiming, ModeRun, run_threads

STALL_TIMEOUT = 60.0


def run_naive(
    urls: list[str],
    jobs: list[PreparedJob],
    downloads: Path,
    *,
    serial: bool = False,
    timeout: float = 600.0,
) -> ModeRun:
    """Run ``jobs`` dealt round-robin over ``urls``; files go under ``downloads``."""
    record = ModeRun("naive", started_at=time.time(), requested=len(jobs))
    deadline = time.monotonic() + timeout
    threads = [
        threading.Thread(
            target=_loop,
            args=(url, share, downloads / f"instance{index}", record, serial, deadline),
            name=f"naive-{index}",
        )
        for index, (url, share) in enumerate(zip(urls, deal(jobs, len(urls)), strict=True))
    ]
    return run_threads(record, threads)


def _loop(
    url: str,
    share: list[PreparedJob],
    folder: Path,
    record: ModeRun,
    serial: bool,
    deadline: float,
) -> None:
    client_id = f"bench-naive-{uuid.uuid4()}"
    with ComfyClient(url) as client, EventStream(url, client_id) as stream:
        for job in share:
            timing = JobTiming(str(uuid.uuid4()), time.time() if serial else record.started_at)
            try:
                client.queue_prompt(job.prompt, prompt_id=timing.job_id, client_id=client_id)
                outcome = follow_prompt(
                    client, stream, timing.job_id, deadline=deadline, stall_timeout=STALL_TIMEOUT
                )
                for item in collect_outputs(outcome.history.outputs):
                    if isinstance(item, OutputFile):
                        client.download(item, folder / timing.job_id / item.relative_path)
                timing.done_at = time.time()
                timing.ok = True
            except ComfyError as exc:
                timing.error = f"{type(exc).__name__}: {exc}"
            record.add(timing)
