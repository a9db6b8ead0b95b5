"""A job's farm state read with redis.asyncio: one pipeline per job (or per page of jobs).

The interpretation is the producer's own (``comfyfarm.producer.outcome``: status word, progress,
JobResult, synthesised results for crashed or revoked jobs); only the I/O is redone here, so the
gateway's event loop never blocks on Redis. The values are read first and handed to
``result_from`` through a read-only stand-in for its Redis client.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis
import redis.asyncio as aioredis

from comfyfarm.producer.outcome import (
    JobState,
    parse_meta,
    progress_from,
    result_from,
    status_word,
)
from comfyfarm.tasks.keyspace import (
    cancel_key,
    celery_result_key,
    job_key,
    job_outputs_key,
    job_result_key,
)
from comfyfarm.tasks.models import JobProgress, JobResult, OutputRecord

MAX_LIVE_OUTPUTS = 1000  # outputs listed while a job runs (its result carries all of them)


@dataclass(frozen=True)
class FarmView:
    """What the farm knows of one job: its status word, latest progress and result."""

    state: JobState
    status: str  # producer status word: unknown | queued | running | cancelling | retrying | …
    progress: JobProgress | None
    result: JobResult | None
    #: Outputs stored so far while the job runs (``worker.live_outputs``), in order, unique.
    live: tuple[OutputRecord, ...] = ()

    @property
    def outputs(self) -> tuple[OutputRecord, ...]:
        """The result's outputs once there is one, else those stored so far."""
        return tuple(self.result.outputs) if self.result is not None else self.live


class _Prefetched:
    """Answers ``get`` from values already read (what ``result_from`` asks for)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self._values = values

    def get(self, key: str) -> Any:
        return self._values.get(key)


async def read_views(
    client: aioredis.Redis, results: aioredis.Redis, prefix: str, job_ids: Sequence[str]
) -> list[FarmView]:
    """The FarmView of each of ``job_ids`` (two pipelined round trips in all)."""
    if not job_ids:
        return []
    async with results.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.get(celery_result_key(prefix, job_id))
        metas = await pipe.execute()
    async with client.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.get(job_key(prefix, job_id))
            pipe.exists(cancel_key(prefix, job_id))
            pipe.get(job_result_key(prefix, job_id))
            pipe.lrange(job_outputs_key(prefix, job_id), 0, MAX_LIVE_OUTPUTS - 1)
        answers = await pipe.execute()
    views = []
    for index, job_id in enumerate(job_ids):
        record, cancelling, stored, live = answers[4 * index : 4 * index + 4]
        views.append(view_of(job_id, metas[index], record, bool(cancelling), stored, prefix,
                             live=live))  # fmt: skip
    return views


def view_of(
    job_id: str,
    raw_meta: Any,
    record: Any,
    cancelling: bool,
    stored: Any,
    prefix: str,
    *,
    live: Sequence[Any] = (),
) -> FarmView:
    """A FarmView from raw values (also used for pub/sub messages, with the meta they carry)."""
    state = JobState(job_id, parse_meta(raw_meta), record is not None, cancelling)
    values = {job_key(prefix, job_id): record, job_result_key(prefix, job_id): stored}
    result = result_from(cast(redis.Redis, _Prefetched(values)), prefix, state)
    outputs = parse_live(live) if result is None else ()
    return FarmView(state, status_word(state), progress_from(state), result, outputs)


def parse_live(raws: Sequence[Any]) -> tuple[OutputRecord, ...]:
    """The live output records, first of each (node, kind, index) kept; bad entries skipped
    (a redelivered job announces its outputs again)."""
    seen: set[tuple[str, str, int]] = set()
    found: list[OutputRecord] = []
    for raw in raws:
        try:
            item = OutputRecord.from_dict(json.loads(raw))
        except (ValueError, TypeError, KeyError):
            continue
        slot = (item.node_id, item.kind, item.index)
        if slot not in seen:
            seen.add(slot)
            found.append(item)
    return tuple(found)
