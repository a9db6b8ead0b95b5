"""Task events for Flower, published at most every 100 ms instead of every event-loop turn.

Celery buffers a worker's task events (task-received, task-started, task-succeeded, ...) and
publishes the buffer as one ``task.multi`` message on the event loop's next turn. With
pipelining, one job's end and the next jobs' received and started come milliseconds apart but in
different turns, so each event still cost its own PUBLISH: ~2.9 per job. ``EventFlushConsumer``
publishes the buffer ``EVENT_FLUSH_SECONDS`` after its first event instead (a hub timer, no
thread), so the events of one hand-over share a message. Flower (``celery.events.receiver``)
takes a ``task.multi`` list event by event, as it did; it learns of each at most 100 ms later.

Nothing waits longer than that, and nothing is lost on the way out:

- the dispatcher itself still publishes at once when its buffer reaches ``buffer_limit`` (24);
- ``stop`` and ``shutdown`` publish the buffer before Celery stops the consumer's steps (the
  heartbeat's worker-offline, then the dispatcher), so the last job's task-succeeded is sent
  even when the worker stops within 100 ms of it.

It is the base of the worker's consumer (``worker.malformed.GuardedConsumer``, installed as
Celery's ``worker_consumer``).
"""

from __future__ import annotations

from typing import Any

from celery.worker.consumer import Consumer
from vine import promise

#: Longest a buffered task event waits for company before it is published.
EVENT_FLUSH_SECONDS = 0.1


class EventFlushConsumer(Consumer):  # type: ignore[misc]
    """Celery's consumer, with buffered task events published by a timer, not every turn."""

    event_flush_seconds = EVENT_FLUSH_SECONDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._event_flush: Any = None  # the pending flush: an entry on the hub's timer
        # Reused, so the hub's ready set holds at most one request for a flush.
        self._schedule_event_flush_promise = promise(self._schedule_event_flush)

    def on_send_event_buffered(self) -> None:
        """Called by the dispatcher for each buffered event, on whichever thread sent it: the
        timer is set on the loop's own thread (``call_soon`` is the hub's thread-safe door)."""
        if self.hub:
            self.hub.call_soon(self._schedule_event_flush_promise)

    def _schedule_event_flush(self) -> None:
        pending = self._event_flush
        if pending is not None and not pending.canceled:
            return  # a flush is due already: this event goes with it
        # A cancelled entry (Celery cancels a broken connection's timers) is replaced, so no
        # event waits for a flush that never comes.
        self._event_flush = self.hub.call_later(self.event_flush_seconds, self._flush_event_buffer)

    def _flush_event_buffer(self) -> None:
        self._event_flush = None
        self._flush_events()  # Celery's: publishes every buffered group, nothing if empty

    def flush_events_now(self) -> None:
        """Publish the buffered events at once (the pending timer is cancelled). Costs what the
        heartbeat's worker-offline, sent right after it, costs: a broker that is gone fails it."""
        if self._event_flush is not None:
            self._event_flush.cancel()
        self._flush_event_buffer()

    def stop(self) -> None:
        self.flush_events_now()
        super().stop()

    def shutdown(self) -> None:
        self.flush_events_now()
        super().shutdown()
