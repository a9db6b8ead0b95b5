"""The farm's submission ledger: where each job's prompt was POSTed, and how often, in Redis.

``worker.runner`` asks it (``SubmissionLedger``) so a job delivered again finds its prompt on
whichever ComfyUI has it instead of running it twice; ``worker.policy`` asks it how many tries
of a job reached a ComfyUI or failed on the output store, which is what a job's
``max_retries`` counts. A try that only collects (the prompt already finished) POSTs nothing:
without counting its store failures, a full disk would retry a job for as long as the
unsubmitted tries allow, rewriting every output each time.
"""

from __future__ import annotations

import logging

import redis

from comfyfarm.tasks.keys import store_failure_count_key, submission_count_key, submission_key

log = logging.getLogger(__name__)


class RedisLedger:
    """Where each job's prompt was POSTed, and how many times, in Redis (see
    ``worker.runner.SubmissionLedger``). A POST is counted before it is sent: one whose answer
    was lost still counts.

    The three writes of ``record`` go in one round trip without MULTI/EXEC: they need not be
    isolated from other clients (only this job's worker writes these keys), and a transaction
    cost two more commands per job."""

    def __init__(self, client: redis.Redis, prefix: str, *, ttl: int) -> None:
        self._client, self._prefix, self._ttl = client, prefix, ttl

    def where(self, job_id: str) -> str | None:
        value = self._client.get(submission_key(self._prefix, job_id))
        return value.decode() if isinstance(value, bytes) else value

    def record(self, job_id: str, comfy_url: str) -> None:
        count_key = submission_count_key(self._prefix, job_id)
        with self._client.pipeline(transaction=False) as pipe:
            pipe.set(submission_key(self._prefix, job_id), comfy_url, ex=self._ttl)
            pipe.incr(count_key)
            pipe.expire(count_key, self._ttl)
            pipe.execute()

    def submissions(self, job_id: str, *, unknown: int) -> int:
        """How many times the job's prompt was POSTed to a ComfyUI; ``unknown`` if Redis
        cannot say."""
        try:
            value = self._client.get(submission_count_key(self._prefix, job_id))
        except redis.RedisError as exc:
            log.warning("could not read the submissions of job %s: %s", job_id, exc)
            return unknown
        return int(value or 0)

    def count_store_failure(self, job_id: str) -> int:
        """Count one try of the job that failed on the output store; returns the total (0 if
        Redis cannot say: the unsubmitted-tries bound still holds)."""
        key = store_failure_count_key(self._prefix, job_id)
        try:
            with self._client.pipeline(transaction=True) as pipe:
                pipe.incr(key)
                pipe.expire(key, self._ttl)
                total, _ = pipe.execute()
        except redis.RedisError as exc:
            log.warning("could not count a store failure of job %s: %s", job_id, exc)
            return 0
        return int(total)
