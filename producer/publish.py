"""Publishing JobSpecs as RUN_JOB Celery messages, many per Redis round trip.

Messages are built by Celery itself (``app.amqp.create_task_message`` + ``send_task_message``,
what ``send_task`` does), so workers see ordinary task messages: ``args = [spec.to_dict()]``,
``task_id = job_id``, plus a ``task-sent`` event for Flower. Two things differ from
``send_task``:

- kombu's producer batch (kombu ≥ 5.7) puts a whole chunk of messages and events into one Redis
  pipeline: thousands of jobs per second instead of one round trip each;
- no result-backend subscription per job (``send_task`` subscribes to every task's channel, which
  a long-lived producer would have to drain); ``Job.wait`` subscribes on demand;
- after each chunk, one token per message on the queue's doorbell (``tasks.doorbell``), in one
  command once the chunk is in Redis, instead of one per message (``deferred_rings``): idle
  workers block on doorbells, not on the queue lists (``worker.safe_fetch``).

Before each chunk is published, a small record per job (``<prefix>job:<id>``) is written so
``Job.status()`` can tell "queued" from "unknown". It carries the spec's fingerprint: a job id
submitted again with a different spec is refused (``JobIdInUse``, nothing of its chunk sent) —
otherwise the second job would "succeed" with the first one's outputs. The same spec again is
sent again and finds the existing job (a worker follows or collects its prompt, never runs it
twice), which is how a dead letter is re-submitted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import redis
from celery import Celery

from comfyfarm.producer.errors import JobIdInUse, SubmitError
from comfyfarm.tasks.doorbell import deferred_rings, ring
from comfyfarm.tasks.keyspace import job_key
from comfyfarm.tasks.models import JobSpec
from comfyfarm.tasks.names import RUN_JOB
from comfyfarm.tasks.routing import celery_priority, check_queue
from comfyfarm.tasks.settings import Settings, time_limit_grace

log = logging.getLogger(__name__)

DEFAULT_CHUNK = 500
# The first chunk is small, so idle workers start on it while the rest is still being built.
FIRST_CHUNK = 16
REPR_LIMIT = 240


class Publisher:
    """Sends JobSpecs to a queue of the farm."""

    def __init__(self, app: Celery, client: redis.Redis, settings: Settings) -> None:
        self.app = app
        self.client = client
        self.settings = settings
        self._declared: set[str] = set()

    def publish(
        self,
        specs: Sequence[JobSpec],
        *,
        queue: str,
        priority: int | None,
        chunk_size: int = DEFAULT_CHUNK,
    ) -> None:
        """Enqueue ``specs`` in order; raises SubmitError saying which jobs went out if the
        broker fails part-way."""
        check_queue(queue)
        message_priority = celery_priority(priority)
        sent: list[str] = []
        try:
            with self.app.producer_or_acquire() as producer:
                for chunk in _chunks(specs, max(1, chunk_size)):
                    # The record first: a plain Redis call fails at once on a wrong password,
                    # where kombu's connection would retry for seconds.
                    self._record(chunk, queue, priority, sent=sent, specs=specs)
                    self._declare(producer, queue)
                    with deferred_rings(), _batch(producer, len(chunk)) as batching:
                        for spec in chunk:
                            self._send(producer, spec, queue, message_priority, retry=not batching)
                    sent.extend(spec.job_id for spec in chunk)
                    self._ring(queue, len(chunk))
        except JobIdInUse:
            raise
        except Exception as exc:
            raise SubmitError(
                job_ids_sent=sent,
                job_ids_not_sent=[spec.job_id for spec in specs[len(sent) :]],
                reason=f"{type(exc).__name__}: {exc}",
            ) from exc

    def _send(
        self, producer: Any, spec: JobSpec, queue: str, priority: int, *, retry: bool
    ) -> None:
        amqp = self.app.amqp
        grace = time_limit_grace(spec.deadline_seconds)
        message = amqp.create_task_message(
            spec.job_id,
            RUN_JOB,
            [spec.to_dict()],
            {},
            time_limit=spec.deadline_seconds + 2 * grace,
            soft_time_limit=spec.deadline_seconds + grace,
            create_sent_event=self.app.conf.task_send_sent_event,
            reply_to=self.app.thread_oid,
            argsrepr=describe_job(spec),
            kwargsrepr=repr(dict(spec.labels)) if spec.labels else "{}",
        )
        amqp.send_task_message(
            producer,
            RUN_JOB,
            message,
            queue=queue,
            priority=priority,
            declare=[],  # declared once per queue in _declare
            retry=retry,
            headers={"comfyfarm": job_header(spec)},
        )

    def _ring(self, queue: str, count: int) -> None:
        """Wake idle workers of ``queue`` (after the messages are in it, so a worker woken
        finds them). A failed ring costs latency only: workers look every
        ``COMFYFARM_FETCH_POLL_SECONDS`` anyway."""
        try:
            ring(self.client, self.settings.key_prefix, {queue: count})
        except redis.RedisError as exc:
            log.warning("ringing the doorbell of queue %s failed (workers find the jobs within "
                        "their poll): %s", queue, exc)  # fmt: skip

    def _declare(self, producer: Any, queue: str) -> None:
        if queue not in self._declared:
            producer.maybe_declare(self.app.amqp.queues[queue])
            self._declared.add(queue)

    def _record(
        self,
        chunk: Sequence[JobSpec],
        queue: str,
        priority: int | None,
        *,
        sent: list[str],
        specs: Sequence[JobSpec],
    ) -> None:
        """Write the records of ``chunk``. Raises ``JobIdInUse`` (and leaves the records as
        they were) if an id is taken by a job with another spec."""
        ttl = int(self.settings.result_expires)
        prefix = self.settings.key_prefix
        with self.client.pipeline(transaction=False) as pipe:
            for spec in chunk:
                record = _record_of(spec, queue, priority)
                pipe.set(job_key(prefix, spec.job_id), json.dumps(record), ex=ttl, nx=True)
            written = pipe.execute()
        taken = {spec.job_id: spec for spec, new in zip(chunk, written, strict=True) if not new}
        for job_id, spec in taken.items():
            stored = _stored_fingerprint(self.client.get(job_key(prefix, job_id)))
            if stored is not None and stored != fingerprint(spec):
                created = [s.job_id for s, new in zip(chunk, written, strict=True) if new]
                if created:
                    self.client.delete(*(job_key(prefix, new_id) for new_id in created))
                raise JobIdInUse(
                    job_id=job_id,
                    job_ids_sent=list(sent),
                    job_ids_not_sent=[s.job_id for s in specs[len(sent) :]],
                )
        if taken:  # the same job again: its record now says where it was sent this time
            with self.client.pipeline(transaction=False) as pipe:
                for spec in taken.values():
                    record = _record_of(spec, queue, priority)
                    pipe.set(job_key(prefix, spec.job_id), json.dumps(record), ex=ttl)
                pipe.execute()


def _record_of(spec: JobSpec, queue: str, priority: int | None) -> dict[str, Any]:
    return {
        "job_id": spec.job_id,
        "queue": queue,
        "priority": priority,
        "workflow_name": spec.workflow_name,
        "params": spec.params,
        "labels": spec.labels,
        "enqueued_at": spec.enqueued_at,
        "deadline_seconds": spec.deadline_seconds,
        "fingerprint": fingerprint(spec),
    }


def fingerprint(spec: JobSpec) -> str:
    """SHA-256 of everything that shapes the job (all of the spec but its enqueue time)."""
    shape = {key: value for key, value in spec.to_dict().items() if key != "enqueued_at"}
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()


def _stored_fingerprint(raw: Any) -> str | None:
    try:
        value = json.loads(raw)["fingerprint"] if raw is not None else None
    except (ValueError, TypeError, KeyError):
        return None
    return value if isinstance(value, str) else None


@contextlib.contextmanager
def _batch(producer: Any, size: int) -> Iterator[bool]:
    """kombu's publish batch when the transport supports it (yields True), else nothing."""
    if hasattr(producer, "batch") and getattr(producer, "supports_batch_publish", False):
        # Every job is a message plus a task-sent event.
        with producer.batch(max_size=2 * size + 2):
            yield True
    else:
        yield False


def describe_job(spec: JobSpec) -> str:
    """A short readable line for Flower's args column: ``workflow(seed=1, steps=20)``."""
    name = spec.workflow_name or "prompt"
    params = ", ".join(f"{key}={_short(value)}" for key, value in spec.params.items())
    text = f"{name}({params})"
    return text if len(text) <= REPR_LIMIT else text[: REPR_LIMIT - 1] + "…"


def job_header(spec: JobSpec) -> dict[str, Any]:
    """A small header readable without decoding the body (queue inspection tools)."""
    return {
        "v": spec.version,
        "workflow": spec.workflow_name,
        "labels": spec.labels,
        "enqueued_at": spec.enqueued_at,
    }


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _chunks(specs: Sequence[JobSpec], size: int) -> Iterator[Sequence[JobSpec]]:
    """``specs`` in slices: the first of at most ``FIRST_CHUNK``, the others of ``size``."""
    start = 0
    step = min(size, FIRST_CHUNK)
    while start < len(specs):
        yield specs[start : start + step]
        start += step
        step = size
