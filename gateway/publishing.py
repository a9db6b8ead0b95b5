"""PublishBatcher: group commit of the gateway's submissions into the farm's queues.

Publishing is the producer's synchronous ``Farm.send`` (kombu builds the Celery messages), so it
runs in a thread. One thread hop and two Redis pipelines per submission would cap a gateway at a
few hundred submits a second; instead, submissions that arrive while a publish is in flight wait
for the next one, and each flush writes the gateway's job records of everything that waited in
one pipeline, then sends the jobs grouped by queue and priority, as ``Farm.submit_many`` does.
An idle gateway publishes at once (no added latency); a busy one sends larger batches,
with up to ``MAX_IN_FLIGHT`` publishes under way at once.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass

import redis.asyncio as aioredis

from comfyfarm.gateway.job_records import JobRecord, save_records
from comfyfarm.producer import Farm, SubmitError
from comfyfarm.tasks.models import JobSpec

MAX_BATCH = 500
MAX_IN_FLIGHT = 4  # publishes under way at once: one's Redis round trips overlap another's work


@dataclass
class _Pending:
    spec: JobSpec
    record: JobRecord
    queue: str
    priority: int | None
    done: asyncio.Future[None]


class PublishBatcher:
    def __init__(self, farm: Farm, client: aioredis.Redis) -> None:
        self._farm = farm
        self._client = client
        self._pending: list[_Pending] = []
        self._flushers: set[asyncio.Task[None]] = set()

    async def send(
        self, spec: JobSpec, record: JobRecord, *, queue: str, priority: int | None
    ) -> None:
        """Record and enqueue ``spec``; raises what failed for it (SubmitError, RedisError …)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(spec, record, queue, priority, done))
        if len(self._flushers) < MAX_IN_FLIGHT:
            task = asyncio.create_task(self._flush(), name="gateway-publish")
            self._flushers.add(task)
            task.add_done_callback(self._flushers.discard)
        await done

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            groups: dict[tuple[str, int | None], list[_Pending]] = defaultdict(list)
            for item in batch:
                groups[(item.queue, item.priority)].append(item)
            try:
                settings = self._farm.settings
                await save_records(self._client, settings.key_prefix, [i.record for i in batch],
                                   retention=settings.result_expires)  # fmt: skip
            except Exception as exc:  # noqa: BLE001 - handed to each waiting submission
                for item in batch:
                    if not item.done.done():
                        item.done.set_exception(exc)
                continue
            outcomes = await asyncio.to_thread(self._publish, groups)
            for item in batch:
                error = outcomes.get(item.spec.job_id)
                if item.done.done():
                    continue
                if error is None:
                    item.done.set_result(None)
                else:
                    item.done.set_exception(error)

    def _publish(
        self, groups: dict[tuple[str, int | None], list[_Pending]]
    ) -> dict[str, BaseException]:
        """Job id → the error that kept it from being sent (absent: sent)."""
        errors: dict[str, BaseException] = {}
        for (queue, priority), items in groups.items():
            try:
                self._farm.send([i.spec for i in items], queue=queue, priority=priority)
            except SubmitError as exc:
                sent = set(exc.job_ids_sent)
                errors.update({i.spec.job_id: exc for i in items if i.spec.job_id not in sent})
            except Exception as exc:  # noqa: BLE001 - handed to each waiting submission
                errors.update({i.spec.job_id: exc for i in items})
        return errors
