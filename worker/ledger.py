"""The farm's submission ledger: where each job's prompt was POSTed, and how often, in Redis.

``worker.runner`` asks it (``SubmissionLedger``) so a job delivered again finds its prompt on
whichever ComfyUI has it instead of running it twice; ``worker.policy`` asks it how many tries
of a job reached a ComfyUI or failed on the output store, which is what a job's
``max_retries`` counts. A try that only collects (the prompt already finished) POSTs nothing:
without counting its store failures, a full disk would retry a job for as long as the
unsubmitted tries allow, rewriting every output each time.

One key per job holds both answers, ``submitted:<job_id>`` = JSON ``{"url": …, "count": n}``,
so a try costs two commands: one MGET before the POST (the entry, together with the job's
cancel flag: ``JobLedger``) and one SET after it. Entries written before (a plain URL, the count
in ``submitted:<job_id>:count``) are still read, so workers can be upgraded one at a time.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import redis

from comfyfarm.tasks.keys import store_failure_count_key, submission_count_key, submission_key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    """A job's ledger entry: the ComfyUI its prompt went to last, and how many POSTs so far."""

    url: str | None = None
    count: int = 0

    @classmethod
    def parse(cls, value: bytes | str | None, old_count: bytes | str | None) -> Entry:
        """The entry from ``submitted:<id>`` and the older ``submitted:<id>:count`` key.

        An old worker writes a plain URL and counts in the separate key; a new one writes
        JSON and leaves that key alone. During an upgrade both may have counted the same job,
        so the larger count wins (each POST is counted by one of them)."""
        text = value.decode() if isinstance(value, bytes) else value
        old = _int(old_count)
        if text is None:
            return cls(None, old)
        if text.startswith("{"):
            try:
                data = json.loads(text)
                return cls(str(data["url"]), max(int(data["count"]), old))
            except (ValueError, KeyError, TypeError):
                log.warning("unreadable submission ledger entry %r: ignoring it", text[:200])
                return cls(None, old)
        return cls(text, old)  # the format before: a plain URL

    def encode(self) -> str:
        return json.dumps({"url": self.url, "count": self.count}, separators=(",", ":"))


class RedisLedger:
    """Where each job's prompt was POSTed, and how many times, in Redis (see
    ``worker.runner.SubmissionLedger``). A POST is counted before it is sent: one whose answer
    was lost still counts.

    ``record`` reads the count and writes it plus one: not atomic, and it need not be — only
    the holder of the job's lease POSTs its prompt, so nobody else writes the entry meanwhile."""

    def __init__(self, client: redis.Redis, prefix: str, *, ttl: int) -> None:
        self._client, self._prefix, self._ttl = client, prefix, ttl

    def read(self, job_id: str, *extra: str) -> tuple[Entry, list[bytes | str | None]]:
        """The job's entry, and the values of the ``extra`` keys, in one MGET."""
        keys = [submission_key(self._prefix, job_id), submission_count_key(self._prefix, job_id)]
        values = self._client.mget([*keys, *extra])
        return Entry.parse(values[0], values[1]), list(values[2:])

    def where(self, job_id: str) -> str | None:
        return self.read(job_id)[0].url

    def record(self, job_id: str, comfy_url: str) -> None:
        self.write(job_id, Entry(comfy_url, self.read(job_id)[0].count + 1))

    def write(self, job_id: str, entry: Entry) -> None:
        """Store ``entry`` as the job's (one SET)."""
        self._client.set(submission_key(self._prefix, job_id), entry.encode(), ex=self._ttl)

    def submissions(self, job_id: str, *, unknown: int) -> int:
        """How many times the job's prompt was POSTed to a ComfyUI; ``unknown`` if Redis
        cannot say."""
        try:
            entry, _ = self.read(job_id)
        except redis.RedisError as exc:
            log.warning("could not read the submissions of job %s: %s", job_id, exc)
            return unknown
        return entry.count

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


class JobLedger:
    """One try's view of its job's ledger entry (``worker.runner.SubmissionLedger``), read once.

    Before its POST a try asks two things of Redis: was the job cancelled (the first cancel
    check, ``worker.cancel_watch``) and where did its prompt go before (``where``). Both are
    asked at the start of the try, so ``cancel_requested`` reads the flag and the entry in one
    MGET, ``where`` answers from it, and ``record`` writes the count it read plus one (one SET).
    """

    def __init__(self, ledger: RedisLedger, job_id: str, cancel_key: str) -> None:
        self._ledger, self.job_id, self._cancel_key = ledger, job_id, cancel_key
        self._entry: Entry | None = None

    def cancel_requested(self) -> bool:
        """Whether the job's cancel flag is set; reads the ledger entry in the same MGET."""
        self._entry, (flag,) = self._ledger.read(self.job_id, self._cancel_key)
        return flag is not None

    def where(self, job_id: str) -> str | None:
        return self._read(job_id).url

    def record(self, job_id: str, comfy_url: str) -> None:
        self._entry = Entry(comfy_url, self._read(job_id).count + 1)
        self._ledger.write(job_id, self._entry)

    def _read(self, job_id: str) -> Entry:
        if job_id != self.job_id:  # not ours: no cached entry to answer from
            return self._ledger.read(job_id)[0]
        if self._entry is None:
            self._entry = self._ledger.read(job_id)[0]
        return self._entry


def _int(value: bytes | str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0
