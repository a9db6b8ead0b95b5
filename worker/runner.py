"""The one place that knows the job sequence. No Celery in here.

``run_job`` takes a :class:`tasks.models.JobSpec` and a :class:`JobContext` (a ComfyUI client, an
output store and callbacks) and does, in order:

1. **locate** — find out whether the prompt (``prompt_id == job_id``) was submitted before: the
   submission ledger (Redis, in the farm) says to which ComfyUI, and that ComfyUI says whether it
   is queued, running or finished. A redelivered job is followed or collected there, never POSTed
   a second time. Before every POST the ledger cannot vouch for (no record: a first delivery, or
   a record Redis lost with its last second of AOF) this ComfyUI is asked too, once (the prompt
   id is the job id); without a ledger (direct mode) it is the only record;
2. **upload** input files into a per-job subfolder and point the prompt's inputs at them;
3. **submit** — the WebSocket is connected *before* ``POST /prompt``;
4. **follow** the prompt to ``executing {node: null}`` (reconnect + reconcile inside the tracker),
   reporting progress and honouring cancel requests; a prompt that stalls or outlives its
   deadline is interrupted on ComfyUI before the timeout is raised; what ComfyUI printed
   meanwhile is stored as ``<prefix>/<job_id>/log.txt`` (``worker.job_log``; ``JobResult.log``);
5. **collect** every output (files streamed from ``/view`` into the store, text kept as values) and
   write ``<prefix>/<job_id>/result.json`` beside them, with ComfyUI's own times of the prompt
   and of the end of the prompt before it (``worker.idle_gap``: the pipeline idle gap).

Failures raise the typed errors of the client, the store and the inputs; ``worker.policy`` decides
what a failure means (``worker.job_errors.classify``: the Celery task retries ``Retryable`` ones,
direct mode records every one as a failed result). A cancel ends with a ``cancelled`` result.
Both direct mode (``comfyfarm run``) and the Celery task are thin shells around this function
and that policy.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from comfyfarm.comfy.client import ComfyClient
from comfyfarm.comfy.errors import (
    ComfyError,
    ComfyPermanent,
    ComfyRequestError,
    ComfyUnavailable,
    ExecutionInterrupted,
    PromptLost,
    PromptTimeout,
)
from comfyfarm.comfy.events import Event, ExecutionStart, PreviewImage
from comfyfarm.comfy.history import HistoryEntry
from comfyfarm.comfy.outputs import OutputFile, OutputValue, collect_outputs
from comfyfarm.comfy.state import PromptLookup, PromptState
from comfyfarm.comfy.tracker import PromptOutcome, follow_prompt
from comfyfarm.comfy.ws import EventStream
from comfyfarm.storage import OutputStore
from comfyfarm.storage.base import StorageError
from comfyfarm.storage.keys import job_output_key, result_key
from comfyfarm.tasks.models import JobProgress, JobResult, JobSpec, OutputRecord, Timings
from comfyfarm.tasks.redact import restore_credentials
from comfyfarm.worker.cancellable import CancellableStream, JobCancelled
from comfyfarm.worker.idle_gap import PromptSpan, measure_span
from comfyfarm.worker.inputs import clear_inputs, upload_inputs
from comfyfarm.worker.job_log import JobLog
from comfyfarm.worker.models import fetch_job_models, resolve_models
from comfyfarm.worker.progress import ProgressEstimator

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
#: How often a prompt this worker found on ComfyUI (not POSTed by it) is looked up while followed.
FOREIGN_PROMPT_POLL_SECONDS = 2.0


class MissingRequiredOutputs(ComfyPermanent):
    """Raised when a job finished but nodes it declared as required produced no output."""

    def __init__(self, *, prompt_id: str, missing: list[str]) -> None:
        self.prompt_id = prompt_id
        self.missing = missing
        super().__init__(f"required output nodes produced nothing: {', '.join(missing)}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": type(self).__name__,
            "message": str(self),
            "prompt_id": self.prompt_id,
            "missing": self.missing,
        }


class SubmissionLedger(Protocol):
    """Where each job's prompt was POSTed (a ComfyUI base URL), kept outside any one worker.

    It lets a job that is delivered again — after a worker crash, a retry, a deploy — find its
    prompt on whichever ComfyUI has it, and lets a first delivery skip asking ComfyUI at all.
    """

    def where(self, job_id: str) -> str | None: ...
    def record(self, job_id: str, comfy_url: str) -> None: ...


@dataclass
class JobContext:
    """Everything ``run_job`` needs from outside: where to run, where to store, whom to tell."""

    client: ComfyClient
    store: OutputStore
    client_id: str
    worker_name: str = "direct"
    on_progress: Callable[[JobProgress], None] = lambda progress: None
    #: Called with each output as soon as it is stored (the job still runs): live outputs.
    on_output: Callable[[OutputRecord], None] = lambda record: None
    #: Called once when ``run_job`` ends, however it ends: the outputs are final and the
    #: caller writes the result (or retries) next. Live outputs drop what they did not list.
    on_outputs_end: Callable[[], None] = lambda: None
    #: Called with each preview image ComfyUI sends for the prompt (latent previews).
    on_preview: Callable[[PreviewImage], None] = lambda image: None
    cancel_requested: Callable[[], bool] = lambda: False
    attempts: int = 1
    started_at: float = field(default_factory=time.time)
    #: None (direct mode): always ask this ComfyUI whether it knows the prompt before POSTing.
    ledger: SubmissionLedger | None = None
    #: Where the prompt's slice of ComfyUI's console log was stored (``worker.job_log``).
    log_uri: str | None = None


def run_job(spec: JobSpec, ctx: JobContext) -> JobResult:
    """Run one job to a result; see the module docstring for the sequence.

    A job whose cancel was requested before it started never touches ComfyUI. However it ends,
    ``ctx.on_outputs_end`` is called before its result is written (by the caller).
    """
    try:
        return _run_job(spec, ctx)
    finally:
        ctx.on_outputs_end()


def _run_job(spec: JobSpec, ctx: JobContext) -> JobResult:
    ctx.started_at = time.time()
    if ctx.cancel_requested():
        log.info("job %s was cancelled before it started", spec.job_id)
        return _finish(spec, ctx, status="cancelled", outputs=[], node_durations={})
    estimator = ProgressEstimator(spec, worker=ctx.worker_name)
    client, known = locate_prompt(spec.job_id, ctx)
    try:
        outcome = _submit_and_follow(spec, ctx, client, known, estimator)
    except JobCancelled:
        cancel_prompt(client, spec.job_id)
        _clear_inputs(client, spec)
        return _finish(spec, ctx, status="cancelled", outputs=[], node_durations={})
    except ExecutionInterrupted:
        _clear_inputs(client, spec)
        if not ctx.cancel_requested():
            raise  # interrupted by someone else: a failure, not our cancel
        return _finish(spec, ctx, status="cancelled", outputs=[], node_durations={})
    except PromptTimeout:
        # Stalled or past its deadline: stop it on ComfyUI, or it holds the GPU (and the queue
        # behind it) for nobody.
        cancel_prompt(client, spec.job_id)
        _clear_inputs(client, spec)
        raise
    except ComfyPermanent:
        _clear_inputs(client, spec)  # rejected or failed: ComfyUI will not read them again
        raise
    # Read before collecting, while few prompts can have finished after ours; only a prompt on
    # this worker's own ComfyUI tells how long that ComfyUI sat idle before it.
    span = measure_span(client, outcome.history) if client is ctx.client else None
    ctx.on_progress(estimator.phase("collecting"))
    outputs = collect_into_store(spec, ctx, outcome.history, client=client)
    _clear_inputs(client, spec)
    missing = sorted(set(spec.required_outputs) - {record.node_id for record in outputs})
    if missing:
        remove_outputs(ctx.store, spec, outputs)  # a failed job shows no outputs, not some of them
        raise MissingRequiredOutputs(prompt_id=spec.job_id, missing=missing)
    return _finish(
        spec,
        ctx,
        status="succeeded",
        outputs=outputs,
        node_durations=outcome.node_durations,
        span=span,
    )


def _clear_inputs(client: ComfyClient, spec: JobSpec) -> None:
    """Empty the job's uploaded inputs once ComfyUI is done with its prompt (``clear_inputs``).

    Never after a retryable failure: the prompt may still be queued there, or run again."""
    if spec.inputs:
        clear_inputs(client, spec)


def cancel_prompt(client: ComfyClient, prompt_id: str) -> None:
    """Dequeue or interrupt ``prompt_id`` on ComfyUI, best effort (the job ends either way)."""
    try:
        client.cancel(prompt_id)
    except ComfyError as exc:
        log.warning("could not cancel prompt %s on %s: %s", prompt_id, client.display_url, exc)


def locate_prompt(job_id: str, ctx: JobContext) -> tuple[ComfyClient, PromptLookup | None]:
    """The ComfyUI to work with for ``job_id`` and what it knows of the prompt.

    ``None`` for the lookup means the prompt was never submitted anywhere (nothing to ask). A
    prompt that another ComfyUI still has queued is deleted there and runs here; one that another
    ComfyUI is running or has finished is followed or collected there, never run twice.
    """
    if ctx.ledger is None:
        return ctx.client, None
    where = ctx.ledger.where(job_id)  # redacted: the ledger never holds a password
    if where is None or where in (ctx.client.display_url, ctx.client.base_url):
        return ctx.client, None if where is None else ctx.client.lookup(job_id)
    other = ComfyClient(
        restore_credentials(where, ctx.client.base_url), timeout=10.0, limits=ctx.client.limits
    )
    try:
        known = other.lookup(job_id)
    except ComfyError as exc:
        log.warning(
            "job %s was submitted to %s, which does not answer (%s): running it here",
            job_id,
            where,
            exc,
        )
        return ctx.client, ctx.client.lookup(job_id)
    if known.state in (PromptState.RUNNING, PromptState.DONE):
        log.info("job %s is %s on %s: following it there", job_id, known.state.name, where)
        return other, known
    if known.state is PromptState.PENDING:
        log.info("job %s waits in the queue of %s: moving it here", job_id, where)
        cancel_prompt(other, job_id)
    return ctx.client, ctx.client.lookup(job_id)


def _download_progress(
    ctx: JobContext, estimator: ProgressEstimator
) -> Callable[[str, int, int], None]:
    """Progress of a model download: phase ``downloading``, the loader node, bytes done/total."""

    def report(node_id: str, done: int, total: int) -> None:
        snapshot = estimator.phase("downloading")
        ctx.on_progress(replace(snapshot, node=node_id, value=float(done), max=float(total)))

    return report


def _submit_and_follow(
    spec: JobSpec,
    ctx: JobContext,
    client: ComfyClient,
    known: PromptLookup | None,
    estimator: ProgressEstimator,
) -> PromptOutcome:
    if known is not None and known.state is PromptState.DONE and known.history is not None:
        log.info("job %s already finished on ComfyUI: collecting it", spec.job_id)
        return PromptOutcome.from_history(known.history)
    stream = CancellableStream(
        EventStream(
            client.base_url, ctx.client_id, max_frame_bytes=client.limits.max_ws_frame_bytes
        ),
        ctx.cancel_requested,
        job_id=spec.job_id,
    )
    deadline = time.monotonic() + spec.deadline_seconds
    job_log: JobLog | None = None
    try:
        stream.connect(CONNECT_TIMEOUT)
        # Always, now that the socket listens: with no ledger record (direct mode, a first
        # delivery, or a record Redis lost on a crash) ComfyUI itself is the only record, and a
        # prompt it already has must be followed or collected, never POSTed again.
        known = client.lookup(spec.job_id)
        # Events of a prompt another client submitted go to that client's socket, not ours:
        # such a prompt is followed by asking ComfyUI every few seconds instead.
        stall_timeout = min(spec.stall_timeout_seconds, FOREIGN_PROMPT_POLL_SECONDS)
        if known is None or known.state is PromptState.UNKNOWN:
            stall_timeout = spec.stall_timeout_seconds
            prompt = spec.prompt
            if spec.inputs:
                ctx.on_progress(estimator.phase("uploading"))
                prompt = upload_inputs(client, spec, storage_url=ctx.store.url, store=ctx.store)
            fetch_job_models(spec.models, _download_progress(ctx, estimator))
            prompt = resolve_models(prompt, _download_progress(ctx, estimator))
            if ctx.cancel_requested():
                raise JobCancelled(spec.job_id)
            if ctx.ledger is not None:
                ctx.ledger.record(spec.job_id, client.display_url)
            job_log = JobLog.begin(client)
            client.queue_prompt(
                prompt,
                prompt_id=spec.job_id,
                client_id=ctx.client_id,
                extra_data={"comfyfarm": {"job_id": spec.job_id, "worker": ctx.worker_name}},
            )
            if job_log is not None:
                job_log.submitted(spec.job_id)
        elif known.state is PromptState.DONE and known.history is not None:
            log.info("job %s already finished on ComfyUI: collecting it", spec.job_id)
            return PromptOutcome.from_history(known.history)
        else:
            log.info(
                "job %s is already %s on ComfyUI: following it, not submitting again",
                spec.job_id,
                known.state.name,
            )
        ctx.on_progress(estimator.phase("submitted"))

        def on_event(event: Event) -> None:
            if (
                job_log is not None
                and isinstance(event, ExecutionStart)
                and event.prompt_id == spec.job_id
            ):
                job_log.mark_started()
            if isinstance(event, PreviewImage):
                ctx.on_preview(event)
            progress = estimator.feed(event)
            if progress is not None:
                ctx.on_progress(progress)

        return follow_prompt(
            client,
            stream,
            spec.job_id,
            deadline=deadline,
            stall_timeout=stall_timeout,
            on_event=on_event,
        )
    except ComfyUnavailable:
        job_log = None  # ComfyUI is gone: do not wait for it again just for its log
        raise
    finally:
        stream.close()
        if job_log is not None:
            ctx.log_uri = job_log.save(ctx.store, spec.storage_prefix, spec.job_id)


def collect_into_store(
    spec: JobSpec, ctx: JobContext, history: HistoryEntry, *, client: ComfyClient | None = None
) -> list[OutputRecord]:
    """Stream every file output from ComfyUI into the store; keep non-file outputs as values.

    Re-collecting the same job writes the same keys again (idempotent), so a redelivered job that
    finds its prompt already finished simply collects. Outputs of nodes ComfyUI served from its
    cache (``execution_cached``) are marked ``cached``. All or nothing: when one output cannot
    be collected, those already stored are removed again before the error propagates (a failed
    or retried job never leaves some of its outputs under their final names).
    """
    records: list[OutputRecord] = []
    try:
        _collect(spec, ctx, history, client or ctx.client, records)
    except BaseException:
        remove_outputs(ctx.store, spec, records)
        raise
    return records


def remove_outputs(store: OutputStore, spec: JobSpec, records: list[OutputRecord]) -> None:
    """Delete the stored files of ``records``, best effort (the store may be what failed; its
    stale temp files are swept by ``LocalStore.sweep_temp``)."""
    for record in records:
        if record.uri is None:
            continue
        key = job_output_key(
            spec.storage_prefix, spec.job_id, record.node_id, record.index, record.filename
        )
        try:
            store.delete(key)
        except StorageError as exc:
            log.warning("could not remove partial output %s: %s", record.uri, exc)


def _collect(
    spec: JobSpec,
    ctx: JobContext,
    history: HistoryEntry,
    source: ComfyClient,
    records: list[OutputRecord],
) -> None:
    """``collect_into_store``'s loop: appends each record as soon as its output is stored."""
    cached = set(history.cached_nodes)
    # Every /view read ends by the job's deadline (ctx.started_at is wall-clock time), with a
    # little time to collect a prompt that finished just before it (less than Celery's grace).
    left = spec.deadline_seconds - (time.time() - ctx.started_at)
    deadline = time.monotonic() + max(left, min(60.0, spec.deadline_seconds / 10))
    for item in collect_outputs(history.outputs):
        if isinstance(item, OutputValue):
            records.append(
                OutputRecord(
                    node_id=item.node_id,
                    kind=item.kind,
                    index=item.index,
                    filename="",
                    uri=None,
                    bytes=0,
                    hash="",
                    mime="text/plain",
                    value=item.value,
                    cached=item.node_id in cached,
                )  # fmt: skip
            )
            ctx.on_output(records[-1])
            continue
        assert isinstance(item, OutputFile)
        key = job_output_key(
            spec.storage_prefix, spec.job_id, item.node_id, item.index, item.filename
        )
        mime = guess_mime(item.filename)
        try:
            chunks = source.iter_output(item, deadline=deadline)
            stored = ctx.store.write(key, chunks, content_type=mime)
        except ComfyRequestError as exc:
            raise _vanished_output(source, spec.job_id, exc) from exc
        records.append(
            OutputRecord(
                node_id=item.node_id,
                kind=item.kind,
                index=item.index,
                filename=item.filename,
                uri=stored.uri,
                bytes=stored.bytes,
                hash=stored.hash,
                mime=mime,
                animated=item.animated,
                cached=item.node_id in cached,
            )  # fmt: skip
        )
        ctx.on_output(records[-1])


def _vanished_output(client: ComfyClient, prompt_id: str, error: ComfyRequestError) -> ComfyError:
    """A file the history listed is gone (404 on /view). If ComfyUI no longer knows the prompt
    either, it restarted between the history read and the download: the prompt is lost, which is
    retryable. Otherwise the 404 stands as it is."""
    if error.status != 404:
        return error
    try:
        known = client.lookup(prompt_id)
    except ComfyError as exc:
        return exc
    if known.state is PromptState.UNKNOWN:
        return PromptLost(prompt_id=prompt_id)
    return error


def _finish(
    spec: JobSpec,
    ctx: JobContext,
    *,
    status: str,
    outputs: list[OutputRecord],
    node_durations: dict[str, float],
    error: dict[str, Any] | None = None,
    span: PromptSpan | None = None,
) -> JobResult:
    result = build_result(
        spec,
        ctx,
        status=status,
        outputs=outputs,
        node_durations=node_durations,
        error=error,
        span=span,
    )
    write_result(ctx.store, spec, result)
    return result


def build_result(
    spec: JobSpec,
    ctx: JobContext,
    *,
    status: str,
    outputs: list[OutputRecord],
    node_durations: dict[str, float] | None = None,
    error: dict[str, Any] | None = None,
    span: PromptSpan | None = None,
) -> JobResult:
    """The job's result; ``span`` (ComfyUI's own times of the prompt) fills ``prompt_*`` and
    ``comfy_free_since`` of its timings (``worker.idle_gap``)."""
    finished = time.time()
    return JobResult(
        job_id=spec.job_id,
        status=status,
        outputs=outputs,
        error=error,
        timings=Timings(
            enqueued_at=spec.enqueued_at,
            started_at=ctx.started_at,
            finished_at=finished,
            node_durations=node_durations or {},
            queue_seconds=max(0.0, ctx.started_at - spec.enqueued_at),
            run_seconds=finished - ctx.started_at,
            prompt_started_at=span.started_at if span else 0.0,
            prompt_finished_at=span.finished_at if span else 0.0,
            comfy_free_since=(span.free_since or 0.0) if span else 0.0,
        ),
        worker=ctx.worker_name,
        comfy_url=ctx.client.display_url,
        attempts=ctx.attempts,
        params=spec.params,
        labels=spec.labels,
        log=ctx.log_uri,
    )


def write_result(store: OutputStore, spec: JobSpec, result: JobResult) -> None:
    """``<prefix>/<job_id>/result.json`` beside the outputs, for people and tools without Redis."""
    body = json.dumps(result.to_dict(), indent=2, sort_keys=True).encode()
    store.write_bytes(
        result_key(spec.storage_prefix, spec.job_id), body, content_type="application/json"
    )


_MIME_BY_SUFFIX = {
    ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
    ".gif": "image/gif", ".mp4": "video/mp4", ".webm": "video/webm", ".mov": "video/quicktime",
    ".flac": "audio/flac", ".wav": "audio/wav", ".mp3": "audio/mpeg", ".ogg": "audio/ogg",
    ".opus": "audio/opus", ".glb": "model/gltf-binary", ".json": "application/json",
    ".txt": "text/plain", ".exr": "image/x-exr", ".tif": "image/tiff", ".tiff": "image/tiff",
}  # fmt: skip


def guess_mime(filename: str) -> str:
    """MIME type by suffix (the stdlib's table misses webp/flac on some systems)."""
    suffix = "." + filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    return _MIME_BY_SUFFIX.get(suffix, "application/octet-stream")
