"""Farm: the producer's entry point — submit jobs, follow them, look at the farm.

```python
farm = Farm.from_env()
job = farm.submit(prompt, params={"seed": 1}, workflow_name="sd15")
result = job.wait(600, on_progress=print)
jobs = farm.submit_many(prepared_jobs, priority=7)
jobs = farm.submit_routed(prepared_jobs)   # each where its models are (mixed fleets)
for result in farm.as_completed(jobs, timeout=3600):
    print(result.job_id, result.status)
```

A Farm holds a Celery app (never started as a worker) and Redis clients; it is safe to share
between threads for submitting. Close it (or use ``with``) to release connections.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from celery import Celery

from comfyfarm.producer.build import SpecBuilder, Submittable
from comfyfarm.producer.errors import UnknownJob
from comfyfarm.producer.job import CancelOutcome, Job, JobContext
from comfyfarm.producer.publish import DEFAULT_CHUNK, Publisher
from comfyfarm.producer.status import FarmStatus, QueueDepth, collect_status, queue_depths
from comfyfarm.producer.waiting import ProgressListener, ResultWaiter
from comfyfarm.tasks.app import make_app
from comfyfarm.tasks.connect import redis_client
from comfyfarm.tasks.errors import JobSpecError
from comfyfarm.tasks.fields import uuid_text
from comfyfarm.tasks.keys import DeadLetter, list_dead_letters
from comfyfarm.tasks.keyspace import job_key
from comfyfarm.tasks.models import JobResult, JobSpec
from comfyfarm.tasks.options import JobOptions
from comfyfarm.tasks.routing import SHARED_QUEUE, check_queue
from comfyfarm.tasks.settings import Settings

if TYPE_CHECKING:
    from comfyfarm.tasks.schemas import PublishedSchema
    from comfyfarm.workflows import PreparedJob

DEFAULT_PING_TIMEOUT = 0.5


class Farm:
    """Producer-side access to one farm (one broker + key prefix)."""

    def __init__(self, settings: Settings | None = None, *, app: Celery | None = None) -> None:
        self.settings = settings if settings is not None else Settings.from_env()
        self.app = app if app is not None else make_app(self.settings)
        self.redis = redis_client(self.settings)
        same = self.settings.result_backend == self.settings.broker_url
        self.results = (
            self.redis if same else redis_client(self.settings, url=self.settings.result_backend)
        )
        self._ctx = JobContext(self.app, self.redis, self.results, self.settings)
        self._publisher = Publisher(self.app, self.redis, self.settings)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Farm:
        return cls(Settings.from_env(environ))

    # -- submitting ----------------------------------------------------------------------------
    def submit(self, prompt_or_prepared: Submittable, **options: Any) -> Job:
        """Enqueue one job and return its handle.

        ``prompt_or_prepared``: an API-format prompt dict, a ``workflows.PreparedJob`` or a
        ``JobSpec``. ``options``: the fields of ``JobOptions`` (an unknown one is a TypeError),
        e.g. ``params`` (the human parameter record shown in Flower and kept in the result),
        ``queue`` (``SHARED_QUEUE`` by default, ``worker_queue(name)``, ``capability_queue(cap)``),
        ``priority`` (0 lowest … 9 most urgent, default 5). Raises JobSpecError (nothing sent) or
        SubmitError.
        """
        chosen = JobOptions.from_keywords(options, caller="submit")
        spec = SpecBuilder(self.settings, chosen).build(prompt_or_prepared)
        return self.send([spec], queue=chosen.queue, priority=chosen.priority)[0]

    def submit_many(
        self, items: Iterable[Submittable], *, chunk_size: int = DEFAULT_CHUNK, **options: Any
    ) -> list[Job]:
        """Enqueue many jobs with few Redis round trips (one pipeline per ``chunk_size`` jobs).

        Every item is validated before anything is sent (JobSpecError names the item). The
        ``options`` (those of ``submit``) apply to every item; a ready JobSpec item takes only
        ``queue`` and ``priority``.
        """
        chosen = JobOptions.from_keywords(options, caller="submit_many")
        builder = SpecBuilder(self.settings, chosen)
        ready = SpecBuilder(self.settings, JobOptions(queue=chosen.queue, priority=chosen.priority))
        specs = []
        for index, item in enumerate(items):
            try:
                specs.append((ready if isinstance(item, JobSpec) else builder).build(item))
            except JobSpecError as exc:
                raise JobSpecError(field=f"items[{index}].{exc.field}", reason=exc.reason) from None
        return self.send(specs, queue=chosen.queue, priority=chosen.priority, chunk_size=chunk_size)

    def submit_routed(
        self,
        jobs: Sequence[PreparedJob],
        *,
        schemas: Sequence[PublishedSchema] | None = None,
        **options: Any,
    ) -> list[Job]:
        """``submit_many`` with each job sent where it can run (``producer.placement``): the
        shared queue when every live worker's published schema accepts it, else the queues of
        the workers whose do. ``schemas``: the published schemas if already read, else they are
        read here. ``options`` are those of ``submit_many`` but ``queue``. Raises
        ``comfyfarm.workflows.PromptInvalid`` (nothing sent) when no worker can run a job, and
        ``NoSchemaSource`` when no worker has published its schema yet. Handles come back in
        the order of ``jobs``."""
        from comfyfarm.producer.placement import place_jobs
        from comfyfarm.producer.schema_lookup import published_schemas
        from comfyfarm.tasks.registry import list_workers

        if "queue" in options:
            raise TypeError("submit_routed() chooses each job's queue itself: give no queue")
        if schemas is None:
            schemas = published_schemas(self.settings)
        live = {worker.name for worker in list_workers(self.redis, self.settings.key_prefix)}
        placements = place_jobs(jobs, schemas, live)
        handles: list[Job | None] = [None] * len(jobs)
        queues = [placement.queue for placement in placements]
        for queue in dict.fromkeys(queues):
            indices = [index for index, q in enumerate(queues) if q == queue]
            sent = self.submit_many([jobs[index] for index in indices], queue=queue, **options)
            for index, handle in zip(indices, sent, strict=True):
                handles[index] = handle
        return [handle for handle in handles if handle is not None]

    def send(
        self,
        specs: Sequence[JobSpec],
        *,
        queue: str | None = None,
        priority: int | None = None,
        chunk_size: int = DEFAULT_CHUNK,
    ) -> list[Job]:
        """Enqueue ready JobSpecs as they are (no re-validation, no new timestamps)."""
        ids = [spec.job_id for spec in specs]
        if len(set(ids)) != len(ids):
            raise JobSpecError(field="job_id", reason="the same job id appears twice")
        if queue is None and self.settings.affinity and specs:
            return self._send_by_model(specs, priority=priority, chunk_size=chunk_size)
        queue = queue or SHARED_QUEUE
        self._publisher.publish(specs, queue=queue, priority=priority, chunk_size=chunk_size)
        return [Job(self._ctx, spec.job_id, spec=spec, queue=queue) for spec in specs]

    def _send_by_model(
        self, specs: Sequence[JobSpec], *, priority: int | None, chunk_size: int
    ) -> list[Job]:
        """``send`` with each job on its checkpoint's queue (``producer.affinity``)."""
        from comfyfarm.producer.affinity import affinity_queues

        queues = [
            q or SHARED_QUEUE for q in affinity_queues(specs, self.redis, self.settings.key_prefix)
        ]
        handles: dict[str, Job] = {}
        for queue in dict.fromkeys(queues):
            chosen = [spec for spec, q in zip(specs, queues, strict=True) if q == queue]
            sent = self.send(chosen, queue=queue, priority=priority, chunk_size=chunk_size)
            handles.update((job.job_id, job) for job in sent)
        return [handles[spec.job_id] for spec in specs]

    # -- following -----------------------------------------------------------------------------
    def job(self, job_id: str) -> Job:
        """A handle on an existing job (raises JobSpecError for a malformed id)."""
        uuid_text(JobSpecError, "job_id", job_id)
        return Job(self._ctx, job_id)

    def find_job(self, text: str) -> Job:
        """The job whose id is ``text`` or starts with it (the 8-character ids the progress bars
        show work). Raises UnknownJob when none or several match."""
        text = text.strip().lower()
        if not re.fullmatch(r"[0-9a-f-]{1,36}", text):
            raise UnknownJob(text=text, matches=[])
        prefix = self.settings.key_prefix
        if len(text) == 36:
            if self.redis.exists(job_key(prefix, text)) or self.job(text).status() != "unknown":
                return self.job(text)
            raise UnknownJob(text=text, matches=[])
        pattern = job_key(prefix, text) + "*"
        start = len(job_key(prefix, ""))
        matches = sorted(
            {_text(key)[start:] for key in self.redis.scan_iter(match=pattern, count=1000)}
        )
        if len(matches) != 1:
            raise UnknownJob(text=text, matches=matches)
        return self.job(matches[0])

    def as_completed(
        self,
        jobs: Iterable[Job | str],
        timeout: float | None = None,
        *,
        on_progress: ProgressListener | None = None,
    ) -> Iterator[JobResult]:
        """Yield the JobResult of each of ``jobs`` (handles or ids) as it finishes.

        One Redis subscription follows all of them, however many (``comfyfarm.producer.waiting``).
        ``timeout`` bounds the whole wait: ``WaitTimeout`` then lists the jobs still pending.
        ``on_progress(job_id, progress)`` is called (from the iterating thread) on new progress.
        """
        ids = [job.job_id if isinstance(job, Job) else job for job in jobs]
        for job_id in ids:
            uuid_text(JobSpecError, "job_id", job_id)
        waiter = ResultWaiter(
            self.redis, self.results, self.settings.key_prefix, ids, on_progress=on_progress
        )
        return waiter.results(timeout)

    def cancel(self, job_id: str, *, reason: str = "cancelled by request") -> CancelOutcome:
        return self.job(job_id).cancel(reason=reason)

    # -- looking at the farm -------------------------------------------------------------------
    def status(self, *, ping_timeout: float | None = DEFAULT_PING_TIMEOUT) -> FarmStatus:
        """Workers (registry, and whether they answer a Celery ping within ``ping_timeout``
        seconds; None skips the ping), queue depths, running jobs, dead-letter count."""
        pinged = None
        if ping_timeout is not None:
            replies = self.app.control.ping(timeout=ping_timeout) or []
            pinged = [node for reply in replies for node in reply]
        return collect_status(self.redis, self.settings.key_prefix, pinged)

    def queue_depths(self, queues: Iterable[str] = ()) -> list[QueueDepth]:
        """Depth of the shared queue, of ``queues``, and of any other non-empty farm queue."""
        names = {check_queue(name) for name in queues}
        return queue_depths(self.redis, self.settings.key_prefix, names)

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """Jobs the workers gave up on, newest first."""
        return list_dead_letters(self.redis, self.settings.key_prefix, limit=limit)

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        self.app.close()
        self.redis.close()
        if self.results is not self.redis:
            self.results.close()

    def __enter__(self) -> Farm:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Farm({self.settings!r})"


def _text(key: bytes | str) -> str:
    return key.decode() if isinstance(key, bytes) else key
