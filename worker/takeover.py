"""Taking over the job of a dead worker in seconds, whatever the visibility timeout.

A worker killed outright (``kill -9`` of its process group, a machine losing power) leaves its
job's message unacknowledged in Redis; kombu hands it out again only after the visibility timeout
(3 × the longest job + 5 min at the defaults: 95 minutes). Yet the farm knows much sooner that the
job is orphaned: its lease (``tasks.lease``) is no longer renewed, and the worker's registry entry
(``tasks.registry``) no longer beats. So every live worker runs a ``TakeoverSweeper`` in its main
process, and every ``interval`` seconds one of them, the farm's *sweeper*, sweeps:

1. the broker's unacknowledged deliveries fetched more than ``grace`` seconds ago
   (``worker.unacked``; younger ones may not be in their worker's heartbeat yet);
2. minus every delivery a live worker says it holds (``WorkerInfo.holding``: the tags its kombu
   channel has not acked, sent with each heartbeat). A worker is live while its registry entry is,
   i.e. ``grace`` = the registry TTL after its last beat; a worker restarted under the same name
   does not hold its predecessor's messages, so names do not matter, tags do;
3. minus every job whose lease still exists (its holder renews it: the job runs, e.g. on a worker
   whose heartbeat lapsed, or one in warm shutdown that already left the registry);
4. what remains is put back on its queue at once (``UnackedMessages.restore``: kombu's own restore,
   in one WATCH/MULTI transaction that also checks it is still the same fetch, so two sweepers, or a
   sweeper and kombu's sweep, never restore one delivery twice).

The next worker to fetch it claims the expired lease and finds in the submission ledger the
ComfyUI the prompt went to: the prompt is followed or collected there, never POSTed again
(``worker.copies``, ``worker.runner.locate_prompt``). A job is thus taken over about
``max(lease, registry TTL) + interval`` after its worker died: 30 + 5 s at the defaults. The
visibility timeout stays as the last-resort net (a farm where no worker is left, a broker that
lost the registry).

Who sweeps: the sweeper role is a key with a TTL of ``ROLE_ROUNDS`` intervals (``takeover_key``).
Its holder renews it with each round (one ``SET … GET``: the answer also tells it whether another
worker took the role meanwhile, after a stall; it then writes that worker's name back and steps
back); every other worker tries to take it (``SET NX``) only once per role TTL, so a farm of N
workers costs Redis about ``1 + N / ROLE_ROUNDS`` commands per interval rather than N. A sweeper
that dies is replaced within about two role TTLs (10–36 s at the defaults), which the takeover of
its own job needs anyway (its lease and registry entry last 30 s). Two workers that both believe
they sweep are harmless: each restore is checked in its own transaction.

Why restore the dead worker's message rather than send a new copy of the job? The message would
stay in ``unacked`` and come back after the visibility timeout as a second copy; restoring moves
the one message the job has. It goes back to the queue it came from, as kombu's own restore does:
a job pinned to one worker's queue (``--worker gpu3``) waits there for that worker to return.

Safety: a delivery is restored only if no live worker holds it and its job has no lease. If a live
worker's heartbeat lapses (Redis unreachable from it for ``grace`` seconds), a job it runs keeps
its lease and is left alone; a message it merely holds (a retry waiting for its countdown) may be
restored and run elsewhere, and the late copy then finds the job's lease taken or its prompt known
to the ledger (as for any re-delivered copy). A live worker that does not report ``holding`` (an
older version) pauses the sweeps: its messages cannot be told from orphans. ``grace`` compares the
sweeper's clock with the fetching host's: clocks must agree to within a few seconds.

Errors: a sweep that fails (Redis unreachable) is logged and tried again next round; nothing here
raises into Celery.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from celery import Celery, bootsteps

from comfyfarm.tasks.connect import redis_client
from comfyfarm.tasks.keyspace import lease_key, takeover_key
from comfyfarm.tasks.names import RUN_JOB
from comfyfarm.tasks.registry import list_workers
from comfyfarm.tasks.settings import Settings
from comfyfarm.worker.registry import REGISTRY_TTL
from comfyfarm.worker.unacked import Delivery, UnackedMessages

log = logging.getLogger(__name__)

#: Most delivery tags one heartbeat carries (a worker holds one per pool process plus retries
#: waiting for their countdown); a worker holding more reports None, which pauses the sweeps.
MAX_HOLDING = 500
PAUSED = (
    "job takeover paused: worker %s does not say which jobs it holds (an older version?); "
    "the visibility timeout recovers its jobs"
)
MIN_INTERVAL = 0.5
MAX_INTERVAL = 5.0
#: The sweeper role lasts this many intervals without a renewal; others ask for it this often.
ROLE_ROUNDS = 3


def sweep_interval(settings: Settings) -> float:
    """Seconds between two sweeps of the farm: a sixth of the lease, within 0.5 … 5 s."""
    return min(MAX_INTERVAL, max(MIN_INTERVAL, settings.lease_seconds / 6))


class Holdings:
    """The delivery tags this worker's task consumer holds unacknowledged (kombu's QoS record on
    the consumer's channel: running, prefetched, and waiting for a countdown)."""

    def __init__(self) -> None:
        self._consumer: Any = None

    def attach(self, consumer: Any) -> None:
        self._consumer = consumer

    def tags(self) -> list[str] | None:
        """The tags, [] before consuming began; None if kombu's record cannot be read."""
        if self._consumer is None:
            return []
        task_consumer = getattr(self._consumer, "task_consumer", None)
        if task_consumer is None:
            return []
        qos = getattr(task_consumer.channel, "qos", None)
        delivered, acked = getattr(qos, "_delivered", None), getattr(qos, "_dirty", None)
        if delivered is None or acked is None:
            return None
        for _ in range(3):
            try:  # kombu drops acked tags ("dirty") from its record lazily
                tags = [str(tag) for tag in list(delivered) if tag not in acked]
            except RuntimeError:  # changed by the consumer's thread while copied: copy again
                continue
            return tags if len(tags) <= MAX_HOLDING else None
        return None


class TakeoverSweeper:
    """Every ``interval`` seconds, in a daemon thread, takes part in the farm's sweep (see the
    module docstring). ``sweep`` runs one round now (tests call it directly)."""

    def __init__(
        self,
        rds: redis.Redis,
        prefix: str,
        unacked: UnackedMessages,
        *,
        name: str,
        interval: float,
        grace: float = REGISTRY_TTL,
    ) -> None:
        self._rds = rds
        self._prefix = prefix
        self._unacked = unacked
        self.name = name
        self.interval = interval
        self.grace = grace
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._paused_by: str | None = None
        self.sweeping = False  # holds the sweeper role (see the module docstring)

    @classmethod
    def for_worker(cls, app: Celery, settings: Settings, name: str) -> TakeoverSweeper:
        rds = redis_client(settings)
        unacked = UnackedMessages(rds, settings.key_prefix, app.connection_for_write)
        return cls(rds, settings.key_prefix, unacked, name=name, interval=sweep_interval(settings))

    def start(self) -> None:
        """Start the thread; a no-op while it runs."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="job-takeover", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 5)
        self._unacked.close()

    def _run(self) -> None:
        # Jittered, so the workers of a farm started together do not all ask at the same moment.
        while not self._stop.wait(self.next_wait() * random.uniform(0.8, 1.2)):
            try:
                if self.take_round():
                    self.sweep()
            except Exception as exc:  # a sweep must never end the thread; next round retries
                self.sweeping = False
                log.warning("job takeover sweep failed: %s", exc)

    def next_wait(self) -> float:
        """Seconds to the next round: the sweeper sweeps every interval, the others ask for the
        role once per role TTL."""
        return self.interval if self.sweeping else self.interval * ROLE_ROUNDS

    def take_round(self) -> bool:
        """Whether this worker sweeps this round: it holds (and renews) the sweeper role, or
        takes it because nobody holds it (see the module docstring)."""
        key = takeover_key(self._prefix)
        ttl_ms = max(1, int(self.interval * ROLE_ROUNDS * 1000))
        if self.sweeping:
            previous = self._rds.set(key, self.name, px=ttl_ms, get=True)
            self.sweeping = previous is None or previous in (self.name, self.name.encode())
            if not self.sweeping:  # taken by another while this one stalled: give it back
                self._rds.set(key, previous, px=ttl_ms)  # type: ignore[arg-type]
        else:
            self.sweeping = bool(self._rds.set(key, self.name, nx=True, px=ttl_ms))
        return self.sweeping

    def sweep(self) -> list[Delivery]:
        """One sweep now; returns the deliveries it put back on their queues."""
        entries = self._unacked.older_than(time.time() - self.grace)
        if not entries:
            return []
        workers = list_workers(self._rds, self._prefix)
        silent = [worker.name for worker in workers if worker.holding is None]
        if silent:
            if self._paused_by != silent[0]:
                log.warning(PAUSED, silent[0])
            self._paused_by = silent[0]
            return []
        self._paused_by = None
        held = {tag for worker in workers for tag in worker.holding or ()}
        orphans = self._unacked.payloads([entry for entry in entries if entry[0] not in held])
        return [delivery for delivery in orphans if self._take_over(delivery)]

    def _take_over(self, delivery: Delivery) -> bool:
        if delivery.task_name == RUN_JOB and delivery.task_id:
            if self._rds.exists(lease_key(self._prefix, delivery.task_id)):
                return False  # its lease is renewed: the job runs
        if not self._unacked.restore(delivery):
            return False
        log.warning(
            "job %s: no live worker holds it and its lease expired; handed back to its queue "
            "(fetched %.0f s ago)",
            delivery.task_id or delivery.tag,
            time.time() - delivery.fetched_at,
        )
        return True


class TakeoverStep(bootsteps.StartStopStep):  # type: ignore[misc]
    """Consumer bootstep: tells ``holdings`` which consumer to read and runs ``sweeper`` while
    the worker runs (set both before the worker starts)."""

    requires = ("celery.worker.consumer.tasks:Tasks",)
    holdings: Holdings | None = None
    sweeper: TakeoverSweeper | None = None

    def start(self, consumer: Any) -> None:
        if self.holdings is not None:
            self.holdings.attach(consumer)
        if self.sweeper is not None:
            self.sweeper.start()

    def shutdown(self, consumer: Any) -> None:
        if self.sweeper is not None:
            self.sweeper.stop()


def install(app: Celery, settings: Settings, name: str) -> Callable[[], list[str] | None]:
    """Add the takeover to a worker's app; returns what its registry heartbeat should report
    as ``holding``."""
    holdings = Holdings()
    TakeoverStep.holdings = holdings
    TakeoverStep.sweeper = TakeoverSweeper.for_worker(app, settings, name)
    app.steps["consumer"].add(TakeoverStep)
    return holdings.tags
