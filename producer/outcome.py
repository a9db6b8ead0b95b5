"""Reading a job's state from Redis without Celery's result decoding, and turning it into a status
word, a JobProgress or a JobResult.

Sources, in order of trust: the JobResult the worker stored under ``<prefix>result:<id>``; the
JobResult returned as the task's SUCCESS value; otherwise one is made up from Celery's FAILURE or
REVOKED state, so ``Job.wait()`` always has a JobResult to return.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis

from comfyfarm.tasks.errors import PayloadError
from comfyfarm.tasks.keyspace import cancel_key, celery_result_key, job_key, job_result_key
from comfyfarm.tasks.models import PROGRESS_STATE, JobProgress, JobResult, Timings

log = logging.getLogger(__name__)

READY_STATES = frozenset({"SUCCESS", "FAILURE", "REVOKED"})
RUNNING_STATES = frozenset({"STARTED", PROGRESS_STATE})
FINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})


@dataclass(frozen=True)
class JobState:
    """One snapshot: Celery's meta (None = PENDING), our record and cancel flag."""

    job_id: str
    meta: dict[str, Any] | None
    submitted: bool
    cancel_requested: bool

    @property
    def celery_state(self) -> str:
        return str(self.meta.get("status", "PENDING")) if self.meta else "PENDING"

    @property
    def ready(self) -> bool:
        return self.celery_state in READY_STATES


def read_state(client: redis.Redis, results: redis.Redis, prefix: str, job_id: str) -> JobState:
    """Three reads: the Celery meta, whether we have a submit record, whether cancel is flagged."""
    meta = parse_meta(results.get(celery_result_key(prefix, job_id)))
    with client.pipeline(transaction=False) as pipe:
        pipe.exists(job_key(prefix, job_id))
        pipe.exists(cancel_key(prefix, job_id))
        submitted, cancelling = pipe.execute()
    return JobState(job_id, meta, bool(submitted), bool(cancelling))


def parse_meta(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        meta = json.loads(raw)
    except ValueError:
        log.warning("unreadable Celery meta: %.200r", raw)
        return None
    return meta if isinstance(meta, dict) else None


def status_word(state: JobState) -> str:
    """unknown | queued | running | cancelling | retrying | succeeded | failed | cancelled."""
    celery_state = state.celery_state
    if celery_state == "PENDING":
        if state.cancel_requested and state.submitted:
            return "cancelling"
        return "queued" if state.submitted else "unknown"
    if celery_state in RUNNING_STATES:
        return "cancelling" if state.cancel_requested else "running"
    if celery_state == "RETRY":
        return "retrying"
    if celery_state == "SUCCESS":
        result = state.meta.get("result") if state.meta else None
        status = result.get("status") if isinstance(result, dict) else None
        return status if status in FINAL_STATUSES else "succeeded"
    if celery_state == "FAILURE":
        error = state.meta.get("result") if state.meta else None
        cancelled = isinstance(error, dict) and error.get("exc_type") == "JobCancelled"
        return "cancelled" if cancelled else "failed"
    if celery_state == "REVOKED":
        return "cancelled"
    return celery_state.lower()


def progress_from(state: JobState) -> JobProgress | None:
    if state.celery_state != PROGRESS_STATE or state.meta is None:
        return None
    return parse_progress(state.meta.get("result"))


def parse_progress(data: Any) -> JobProgress | None:
    try:
        return JobProgress.from_dict(data)
    except PayloadError as exc:
        log.debug("ignoring unreadable progress: %s", exc)
        return None


def result_from(client: redis.Redis, prefix: str, state: JobState) -> JobResult | None:
    """The JobResult of a finished job, or None while it is not finished."""
    if not state.ready or state.meta is None:
        return None
    value = state.meta.get("result")
    if state.celery_state == "SUCCESS" and isinstance(value, dict):
        parsed = _parse_result(value)
        if parsed is not None:
            return parsed
    stored = parse_meta(client.get(job_result_key(prefix, state.job_id)))
    if stored is not None:
        parsed = _parse_result(stored)
        if parsed is not None:
            return parsed
    if isinstance(value, dict) and "status" in value and "exc_type" not in value:
        parsed = _parse_result(value)  # a JobResult stored as the REVOKED/FAILURE meta
        if parsed is not None:
            return parsed
    record = parse_meta(client.get(job_key(prefix, state.job_id))) or {}
    return synthesize(state, record)


def synthesize(state: JobState, record: dict[str, Any]) -> JobResult:
    """A JobResult for a job whose worker left none (crash, revoked while queued, bad payload)."""
    meta = state.meta or {}
    value = meta.get("result")
    finished = _timestamp(meta.get("date_done"))
    if state.celery_state == "REVOKED":
        status = "cancelled"
        error = {"type": "Cancelled", "message": _exception_text(value) or "revoked"}
    elif state.celery_state == "FAILURE":
        status = "failed"
        exc_type = value.get("exc_type") if isinstance(value, dict) else None
        error = {"type": str(exc_type or "WorkerError"), "message": _exception_text(value)}
    else:
        status = "failed"
        error = {"type": "UnreadableResult", "message": f"unreadable result: {value!r:.500}"}
    enqueued = float(record.get("enqueued_at") or 0.0)
    return JobResult(
        job_id=state.job_id,
        status=status,
        error=error,
        timings=Timings(enqueued_at=enqueued, started_at=0.0, finished_at=finished),
        worker=str(meta.get("worker") or ""),
        attempts=int(meta.get("retries") or 0) + 1 if meta.get("worker") else 0,
        params=dict(record.get("params") or {}),
        labels=dict(record.get("labels") or {}),
    )


def _parse_result(value: dict[str, Any]) -> JobResult | None:
    try:
        return JobResult.from_dict(value)
    except PayloadError as exc:
        log.warning("ignoring an unreadable JobResult: %s", exc)
        return None


def _exception_text(value: Any) -> str:
    if isinstance(value, dict):
        message = value.get("exc_message", "")
        if isinstance(message, list | tuple):
            return " ".join(str(part) for part in message)
        return str(message)
    return "" if value is None else str(value)


def _timestamp(value: Any) -> float:
    if not isinstance(value, str):
        return 0.0
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return 0.0
