"""Health of the one ComfyUI a worker is bound to, watched from a background thread.

The worker consumes only while ComfyUI answers ``/system_stats`` and its output store can be
written (``worker.store_health``: a job that runs on the GPU and then cannot store its outputs
was run for nothing). :class:`HealthMonitor` polls both, keeps the latest verdict and publishes
the worker's registry entry (name, ComfyUI URL, health, storage, queues, capabilities) with a TTL
heartbeat, so ``comfyfarm status`` shows dead workers as gone.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from comfyfarm.comfy.client import ComfyClient
from comfyfarm.comfy.errors import ComfyError
from comfyfarm.worker.store_health import StoreHealth

log = logging.getLogger(__name__)


@dataclass
class HealthMonitor:
    """Polls ComfyUI (and ``store``) every ``interval`` seconds; ``healthy`` is the latest
    answer of both, ``comfy_healthy`` ComfyUI's alone.

    ``on_beat`` is called after every check with ComfyUI's verdict (the worker registry
    heartbeat; it reads the store's from ``store``).
    """

    client: ComfyClient
    interval: float = 2.0
    on_beat: Callable[[bool], None] = lambda healthy: None
    store: StoreHealth | None = None
    healthy: bool = False
    comfy_healthy: bool = False
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
            if self.comfy_healthy or self.reason == "not checked yet":
                log.warning("ComfyUI at %s is unhealthy: %s", self.client.display_url, exc)
            self.comfy_healthy, self.reason = False, str(exc)
        else:
            if not self.comfy_healthy:
                log.info("ComfyUI at %s is healthy", self.client.display_url)
            self.comfy_healthy, self.reason = True, "ok"
        store_ok = self.store is None or self.store.check()
        self.healthy = self.comfy_healthy and store_ok
        try:
            self.on_beat(self.comfy_healthy)
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
