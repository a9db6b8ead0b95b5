"""The farm-wide Prometheus exporter (``comfyfarm exporter``): what no single worker knows.

Each scrape reads the farm's state from Redis once (``Farm.status`` without pinging workers):
queue depth per queue and priority, workers registered and their ComfyUI health, jobs running,
dead letters. Run one per farm (several would report the same numbers); workers export their own
job and GPU metrics (``comfyfarm worker --metrics-port``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from comfyfarm.producer import Farm


class FarmCollector:
    """A ``prometheus_client`` collector that reads the farm's state at scrape time."""

    def __init__(self, farm: Farm) -> None:
        self.farm = farm

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        status = self.farm.status(ping_timeout=None)
        depth = GaugeMetricFamily(
            "comfyfarm_queue_depth", "Jobs waiting in a queue", labels=["queue", "priority"]
        )
        for queue in status.queues:
            for priority, count in sorted(queue.by_priority.items()):
                depth.add_metric([queue.name, str(priority)], count)
        yield depth
        workers = GaugeMetricFamily(
            "comfyfarm_workers", "Registered workers by their ComfyUI's health", labels=["health"]
        )
        by_health: dict[str, int] = {}
        for worker in status.workers:
            by_health[worker.info.health] = by_health.get(worker.info.health, 0) + 1
        for health in sorted(set(by_health) | {"ok", "down"}):
            workers.add_metric([health], by_health.get(health, 0))
        yield workers
        age = GaugeMetricFamily(
            "comfyfarm_worker_heartbeat_age_seconds", "Seconds since a worker registered last",
            labels=["worker"],
        )  # fmt: skip
        for worker in status.workers:
            age.add_metric([worker.info.name], worker.heartbeat_age)
        yield age
        yield GaugeMetricFamily(
            "comfyfarm_jobs_running", "Jobs holding a lease", value=len(status.running)
        )
        yield GaugeMetricFamily(
            "comfyfarm_dead_letters", "Messages in the dead-letter list", value=status.dead_letters
        )


def serve_exporter(farm: Farm, host: str, port: int, *, token: str | None) -> int:
    """Serve the farm's metrics on a daemon thread; returns the port."""
    from prometheus_client import CollectorRegistry, make_wsgi_app

    from comfyfarm.worker.metrics import serve_wsgi

    registry = CollectorRegistry()
    registry.register(FarmCollector(farm))
    return serve_wsgi(make_wsgi_app(registry), host, port, token=token)
