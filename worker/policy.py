"""What becomes of a job around ``run_job``: whether this copy runs it, whether a failure is
retried, and what is recorded when it ends. No Celery in here: the Celery task (``worker.task``)
turns these decisions into ``retry``/``Ignore``/``JobFailed``, direct mode (``comfyfarm run``)
uses ``run_once``.

- **Admission** (``FarmPolicy.admit``): a copy takes the job's lease (``claim_lease``); a
  lease its holder keeps renewing means the job runs elsewhere (``RUNNING_ELSEWHERE``: the
  shell sends a watch, ``worker.copies``), a job whose result exists is ``FINISHED``;
- **Retry or give up** (``decide``): only a ``Retryable`` error (``worker.job_errors``) is
  retried, after 2, 4, 8 ... seconds, while fewer than ``max_retries + 1`` tries reached a
  ComfyUI or failed on the output store (a try that only collects, and cannot write, counts:
  ``RedisLedger.count_store_failure``) and the deliveries stay within
  ``max_retries + MAX_UNSUBMITTED_RETRIES``; a job that runs out is failed and
  dead-lettered. A ``Permanent`` error fails the job at once;
- **Record** (``fail``, ``FarmPolicy.conclude``): every outcome leaves ``result.json`` beside
  the outputs (the runner writes it for successes and cancels, ``fail`` for failures), and in
  the farm the result under the job's result key; a payload no worker can read, or a job given
  up on, becomes a ``DeadLetter``.
"""

from __future__ import annotations

import enum
import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import redis

from comfyfarm.storage.base import StorageError
from comfyfarm.tasks.errors import JobSpecError, PayloadError
from comfyfarm.tasks.keys import (
    DeadLetter,
    Lease,
    job_result_key,
    lease_key,
    push_dead_letter,
)
from comfyfarm.tasks.models import JobResult, JobSpec
from comfyfarm.tasks.settings import Settings
from comfyfarm.worker.job_errors import JobError, Retryable, classify
from comfyfarm.worker.ledger import RedisLedger
from comfyfarm.worker.runner import JobContext, build_result, run_job, write_result

log = logging.getLogger(__name__)

#: Tries of one job that fail before its prompt reached any ComfyUI (refused connections while
#: ComfyUI restarts, an input source that is down) do not use up its ``max_retries``; this many
#: more deliveries bound them.
MAX_UNSUBMITTED_RETRIES = 20
#: Largest unreadable payload kept whole in a dead letter (JSON characters).
MAX_LETTER_PAYLOAD = 256 * 1024
#: How often a copy that found the job's lease taken looks at it again.
LEASE_POLL_SECONDS = 0.25


def retry_countdown(retries: int, *, cap: float = 60.0) -> float:
    """Seconds before retry number ``retries + 1``: 2, 4, 8 ... capped at a minute (and at
    ``cap``, COMFYFARM_MAX_RETRY_DELAY: the visibility timeout must outlast the wait)."""
    return min(60.0, cap, 2.0 * 2.0**retries)


@dataclass(frozen=True)
class Retry:
    """Deliver the job again after ``countdown`` seconds; ``max_retries`` bounds the deliveries."""

    error: Retryable
    countdown: float
    max_retries: int


@dataclass(frozen=True)
class GiveUp:
    """Fail the job with ``error``; a ``letter_reason`` also dead-letters it."""

    error: JobError
    letter_reason: str | None = None


def decide(
    error: JobError, spec: JobSpec, *, retries: int, submitted: int, max_delay: float = 60.0
) -> Retry | GiveUp:
    """Retry or give up after ``error`` on delivery ``retries + 1``, ``submitted`` tries of
    which reached a ComfyUI (see the module docstring)."""
    if not isinstance(error, Retryable):
        return GiveUp(error)
    limit = spec.max_retries + MAX_UNSUBMITTED_RETRIES
    if submitted <= spec.max_retries and retries < limit:
        return Retry(error, retry_countdown(retries, cap=max_delay), limit)
    if submitted > spec.max_retries:
        return GiveUp(error, f"retries exhausted ({spec.max_retries})")
    return GiveUp(error, f"gave up after {retries + 1} deliveries, {submitted} reached a ComfyUI")


def fail(spec: JobSpec, ctx: JobContext, error: JobError) -> JobResult:
    """The failed result of ``spec``, its ``result.json`` written beside the outputs (best
    effort: the store may be what failed)."""
    result = build_result(spec, ctx, status="failed", outputs=[], error=error.to_dict())
    try:
        write_result(ctx.store, spec, result)
    except StorageError as exc:
        log.warning("could not write result.json of job %s: %s", spec.job_id, exc)
    return result


def run_once(spec: JobSpec, ctx: JobContext) -> JobResult:
    """Direct mode: one try, every job error a failed result (``result.json`` included); a bug
    propagates."""
    try:
        return run_job(spec, ctx)
    except Exception as exc:
        error = classify(exc)
        if error is None:
            raise
        return fail(spec, ctx, error)


def read_spec(payload: dict[str, Any], *, task_id: str | None) -> JobSpec:
    """The job of a message; ``JobSpecError`` names the field no worker can read."""
    spec = JobSpec.from_dict(payload)
    if task_id and spec.job_id != task_id:
        # Results, progress and cancel are keyed by the task id, leases and outputs by the job
        # id: a message where they differ could never be followed by its producer.
        raise JobSpecError(field="job_id", reason="must equal the Celery task id")
    return spec


def claim_lease(lease: Lease, *, poll: float = LEASE_POLL_SECONDS) -> tuple[bool, bool]:
    """Take the job's lease; returns ``(acquired, waited)``.

    A lease held by someone else is either a live copy of the job (its holder renews the lease
    every ttl/2) or one whose holder died: a pool child killed mid-job is re-queued at once
    (``reject_on_worker_lost``) while its lease lives on for up to ttl. So we watch it: renewed
    means alive (give up), released or expired means we take over.
    """
    if lease.acquire():
        return True, False
    last = lease.remaining()
    deadline = time.monotonic() + max(lease.ttl, last or 0.0) + 1.0
    while time.monotonic() < deadline:
        time.sleep(poll)  # polling the lease's TTL: Redis sends no event for a renewal
        if lease.acquire():
            return True, True
        remaining = lease.remaining()
        if remaining is not None and last is not None and remaining > last + poll / 2:
            return False, True
        if remaining is not None:
            last = remaining
    return lease.acquire(), True


class Admission(enum.Enum):
    """What a delivered copy of a job does."""

    RUN = "run"  # this copy holds the lease: run it
    RUNNING_ELSEWHERE = "running elsewhere"  # a live copy renews the lease: watch it
    FINISHED = "finished"  # the job has a result: nothing to do


class FarmPolicy:
    """The policy of one worker process of the farm: its Redis, settings and name."""

    def __init__(self, rds: redis.Redis, settings: Settings, *, worker_name: str) -> None:
        self.rds, self.settings, self.worker_name = rds, settings, worker_name
        self.ledger = RedisLedger(rds, settings.key_prefix, ttl=int(settings.result_expires))

    def admit(self, spec: JobSpec, *, watch: bool) -> tuple[Admission, Lease]:
        """Claim the job's lease (see ``worker.copies``); ``RUN`` leaves it held by us."""
        lease = Lease(
            self.rds,
            lease_key(self.settings.key_prefix, spec.job_id),
            owner=f"{self.worker_name}:{uuid.uuid4().hex}",
            ttl=self.settings.lease_seconds,
        )
        if watch and self._finished(spec):
            log.info("job %s has finished: its watch ends", spec.job_id)
            return Admission.FINISHED, lease
        acquired, waited = claim_lease(lease)
        if not acquired:
            return Admission.RUNNING_ELSEWHERE, lease
        if waited and self._finished(spec):
            lease.release()
            log.warning("job %s finished elsewhere while this copy waited: not running it again",
                        spec.job_id)  # fmt: skip
            return Admission.FINISHED, lease
        return Admission.RUN, lease

    def after_error(self, spec: JobSpec, error: JobError, *, retries: int) -> Retry | GiveUp:
        """``decide`` with the tries the ledger counted (POSTs, plus tries that failed on the
        output store); a retry is logged."""
        submitted = self.ledger.submissions(spec.job_id, unknown=retries + 1)
        if isinstance(error.cause, StorageError):
            # Tries that fail on the store often POST nothing (the prompt is already done): a
            # try counts once, whether it POSTed, failed on the store, or both.
            submitted = max(submitted, self.ledger.count_store_failure(spec.job_id))
        step = decide(error, spec, retries=retries, submitted=submitted,
                      max_delay=self.settings.max_retry_delay)  # fmt: skip
        if isinstance(step, Retry):
            used = f"{submitted} of {spec.max_retries + 1} tries used"
            log.warning("job %s: %s; retry in %.0f s (%s)", spec.job_id, error, step.countdown,
                        used)  # fmt: skip
        return step

    def conclude(self, spec: JobSpec, result: JobResult, *, letter_reason: str | None) -> None:
        """Store ``result`` under the job's result key; dead-letter it if ``letter_reason``."""
        body = json.dumps(result.to_dict(), sort_keys=True).encode()
        key = job_result_key(self.settings.key_prefix, spec.job_id)
        self.rds.set(key, body, ex=int(self.settings.result_expires))
        if letter_reason is not None:
            self._dead_letter(
                DeadLetter(
                    job_id=spec.job_id,
                    reason=letter_reason,
                    error=result.error,
                    worker=result.worker,
                    attempts=result.attempts,
                    spec=spec.to_dict(),
                )
            )

    def reject_payload(
        self, payload: object, exc: PayloadError, *, task_id: str, attempts: int
    ) -> None:
        """Keep a message no worker can read as a dead letter, for a person to look at."""
        try:
            raw = json.dumps(payload)
        except (TypeError, ValueError):
            raw = ""
        kept = payload if isinstance(payload, dict) and len(raw) <= MAX_LETTER_PAYLOAD else None
        self._dead_letter(
            DeadLetter(
                job_id=task_id,
                reason="unreadable payload",
                error=exc.to_dict(),
                worker=self.worker_name,
                attempts=attempts,
                spec=kept,
            )
        )

    def _finished(self, spec: JobSpec) -> bool:
        return bool(self.rds.exists(job_result_key(self.settings.key_prefix, spec.job_id)))

    def _dead_letter(self, letter: DeadLetter) -> None:
        try:
            push_dead_letter(self.rds, self.settings.key_prefix, letter)
        except redis.RedisError:
            log.exception("could not record dead letter for job %s", letter.job_id)
        else:
            log.error("job %s given up: %s", letter.job_id, letter.reason)
