"""Health of the one ComfyUI a worker is bound to, watched from a background thread.

The worker consumes only while ComfyUI answers ``/system_stats``. :class:`HealthMonitor` polls it,
keeps the latest verdict and publishes the worker's registry entry (name, ComfyUI URL, health,
queues, capabilities) with a TTL heartbeat, so ``comfyfarm status`` shows dead workers as gone.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from comfyfarm.comfy.client import ComfyClient
from comfyfarm.comfy.errors import ComfyError

log = logging.getLogger(__name__)


@dataclass
class HealthMonitor:
    """Polls ComfyUI every ``interval`` seconds; ``healthy`` is the latest answer.

    ``on_beat`` is called after every check with the verdict (the worker registry heartbeat).
    """

    client: ComfyClient
    interval: float = 2.0
    on_beat: Callable[[bool], None] = lambda healthy: None
    healthy: bool = False
    reason: str = "not checked yet"
    stats: dict[str, Any] | None = None  # the latest /system_stats answer (None while down)
    _stop: threading.Event = field(default_factory=threading.Event)
    _wake: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def check(self) -> bool:
        """One synchronous check (also used before the worker starts consuming)."""
        try:
            self.stats = self.client.system_stats()
        except ComfyError as exc:
            self.stats = None
            if self.healthy or self.reason == "not checked yet":
                log.warning("ComfyUI at %s is unhealthy: %s", self.client.display_url, exc)
            self.healthy, self.reason = False, str(exc)
        else:
            if not self.healthy:
                log.info("ComfyUI at %s is healthy", self.client.display_url)
            self.healthy, self.reason = True, "ok"
        try:
            self.on_beat(self.healthy)
        except Exception as exc:  # the registry is informative; never let it stop health checks
            log.warning("worker registry heartbeat failed: %s", exc)
        return self.healthy

    def start(self) -> None:
        """Start polling in a daemon thread; a no-op while it already runs. Restartable after
        ``stop`` (the consumer stops and starts its steps again after a broker reconnect)."""
        if self._thread is not None and self._thread.is_alive() and not self._stop.is_set():
            return
        self._stop = threading.Event()  # the old thread, if still finishing, keeps its own
        self._thread = threading.Thread(
            target=self._run, args=(self._stop,), name="comfy-health", daemon=True
        )
        self._thread.start()

    def _run(self, stop: threading.Event) -> None:
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            if stop.is_set():
                return
            self.check()

    def poke(self) -> None:
        """Check (and beat) now instead of at the next interval, e.g. when the running job
        changed and the registry should say so."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
