"""Health of the output store a worker writes to, checked beside its ComfyUI's.

A store that cannot be written (a read-only mount, a permission, a root that is a file, a full
disk) fails every job *after* the GPU ran it. So the worker probes it — writes and removes one
small object, ``.comfyfarm-probe/<worker>`` — and the health gate stops consuming while the
probe fails, like it does while ComfyUI is down: the jobs stay queued for workers whose store
works. The failures a job meets on such a store are retryable (``storage.local``), so a job that
was taken anyway goes to a healthy worker.

The probe runs at most every ``probe_interval`` seconds while it passes (an S3 PUT + DELETE is
not free) and at every health check while it fails. A ``file://`` store is also swept of temp
files a killed worker left behind (``LocalStore.sweep_temp``), at start and every
``temp_max_age / 4`` seconds.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from comfyfarm.storage import OutputStore
from comfyfarm.storage.base import StorageError
from comfyfarm.storage.local import LocalStore
from comfyfarm.tasks.redact import redact_url

log = logging.getLogger(__name__)

PROBE_DIR = ".comfyfarm-probe"


@dataclass
class StoreHealth:
    """Whether ``store`` can be written now (``check``); ``reason`` is "ok" or why not."""

    store: OutputStore
    worker_name: str
    temp_max_age: float = 3600.0
    probe_interval: float = 10.0
    healthy: bool = False
    reason: str = "not checked yet"
    _next_probe: float = 0.0
    _next_sweep: float = 0.0

    def check(self) -> bool:
        """Probe the store when due; sweep stale temp files when due. Never raises."""
        now = time.monotonic()
        if self.healthy and now < self._next_probe:
            return True
        self._next_probe = now + self.probe_interval
        key = f"{PROBE_DIR}/{self.worker_name}"
        try:
            self.store.write_bytes(key, b"ok", content_type="text/plain")
            self.store.delete(key)
        except StorageError as exc:
            if self.healthy or self.reason == "not checked yet":
                log.warning(
                    "output store %s cannot be written: %s", redact_url(self.store.url), exc.reason
                )
            self.healthy, self.reason = False, exc.reason
            return False
        if not self.healthy:
            log.info("output store %s can be written", redact_url(self.store.url))
        self.healthy, self.reason = True, "ok"
        if now >= self._next_sweep:
            self._next_sweep = now + self.temp_max_age / 4
            self.sweep()
        return True

    def sweep(self) -> int:
        """Remove the store's stale temp files (``file://`` only: S3 uploads are atomic, and a
        bucket lifecycle rule ends multipart uploads nobody completed)."""
        if not isinstance(self.store, LocalStore):
            return 0
        try:
            removed = self.store.sweep_temp(self.temp_max_age)
        except OSError as exc:
            log.warning("could not sweep temp files of %s: %s", redact_url(self.store.url), exc)
            return 0
        if removed:
            log.info("removed %d stale temp files from %s", removed, redact_url(self.store.url))
        return removed
