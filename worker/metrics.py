"""Prometheus metrics of one worker, served by ``comfyfarm worker --metrics-port PORT``.

Jobs run in the prefork pool's child processes, so the metrics use ``prometheus_client``'s
multiprocess mode (``tasks.multiprocess_metrics``): every process writes its samples to files
in a directory private to this worker (``PROMETHEUS_MULTIPROC_DIR``, set before the pool forks),
and the main process serves their sum. Sources:

- Celery's ``task_prerun``/``task_postrun``/``task_retry`` signals in the child that runs a job:
  jobs in flight, and from the returned JobResult: outcome, queue wait, execution time, per-node
  time (by node class), nodes ComfyUI served from its cache, model loader nodes that ran (loads).
- the same result's ComfyUI times: the pipeline idle gap, seconds this worker's ComfyUI sat idle
  before a prompt whose job was already waiting (``worker.idle_gap`` defines it).
- ComfyUI's ``/system_stats``, which the health monitor reads every few seconds anyway: up/down,
  VRAM and RAM.

Names start with ``comfyfarm_``; labels stay bounded (workflow names are the producer's, node
classes the ComfyUI's; both capped in length).
"""

from __future__ import annotations

import hmac
import socketserver
import threading
from typing import Any

from comfyfarm.tasks.multiprocess_metrics import aggregate_registry
from comfyfarm.tasks.names import RUN_JOB
from comfyfarm.worker.idle_gap import pipeline_gap

SECONDS_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)
# A pipelined worker's gap is milliseconds; an unpipelined one's is the collect + submit time.
GAP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# Nodes that load model weights: when one runs (not from ComfyUI's cache), a model was (re)loaded.
LOADER_SUFFIXES = (
    "CheckpointLoaderSimple",
    "CheckpointLoader",
    "UNETLoader",
    "VAELoader",
    "LoraLoader",
    "ControlNetLoader",
    "CLIPLoader",
    "UpscaleModelLoader",
)
MAX_LABEL = 64


class WorkerMetrics:
    """The metric families of a worker. Create after ``prepare_multiprocess_dir``
    (``tasks.multiprocess_metrics``)."""

    def __init__(self, worker: str) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.worker = worker
        by_workflow = ["worker", "workflow"]
        self.jobs = Counter(
            "comfyfarm_jobs", "Jobs finished, by outcome", [*by_workflow, "outcome"]
        )
        self.queue_wait = Histogram(
            "comfyfarm_job_queue_wait_seconds",
            "Enqueue to start of the job on this worker",
            by_workflow,
            buckets=SECONDS_BUCKETS,
        )
        self.execution = Histogram(
            "comfyfarm_job_execution_seconds",
            "Start to end of the job on this worker",
            by_workflow,
            buckets=SECONDS_BUCKETS,
        )
        self.node_seconds = Histogram(
            "comfyfarm_node_seconds",
            "Execution time per node class",
            ["worker", "class_type"],
            buckets=SECONDS_BUCKETS,
        )
        self.cache_hits = Counter(
            "comfyfarm_comfy_cached_nodes",
            "Nodes of finished prompts that ComfyUI served from its cache",
            ["worker"],
        )
        self.model_loads = Counter(
            "comfyfarm_comfy_model_loads",
            "Model loader nodes that ran (a model was loaded or swapped)",
            ["worker", "class_type"],
        )
        self.idle_gap = Histogram(
            "comfyfarm_pipeline_idle_gap_seconds",
            "ComfyUI idle between the end of a prompt and the start of the next, "
            "while the next job was already waiting",
            ["worker"],
            buckets=GAP_BUCKETS,
        )
        self.retries = Counter("comfyfarm_job_retries", "Jobs sent back for a retry", ["worker"])
        self.in_flight = Gauge(
            "comfyfarm_jobs_in_flight",
            "Jobs this worker is running",
            ["worker"],
            multiprocess_mode="livesum",
        )
        self.comfy_up = Gauge(
            "comfyfarm_comfy_up",
            "1 while this worker's ComfyUI answers",
            ["worker"],
            multiprocess_mode="mostrecent",
        )
        self.vram_free = Gauge(
            "comfyfarm_comfy_vram_free_bytes",
            "Free VRAM per device",
            ["worker", "device"],
            multiprocess_mode="mostrecent",
        )
        self.vram_total = Gauge(
            "comfyfarm_comfy_vram_total_bytes",
            "Total VRAM per device",
            ["worker", "device"],
            multiprocess_mode="mostrecent",
        )
        self.ram_free = Gauge(
            "comfyfarm_comfy_ram_free_bytes",
            "Free RAM of the ComfyUI host",
            ["worker"],
            multiprocess_mode="mostrecent",
        )

    # -- jobs (pool child) ----------------------------------------------------------------------

    def job_started(self) -> None:
        self.in_flight.labels(self.worker).inc()

    def job_ended(self, spec: dict[str, Any], result: Any) -> None:
        self.in_flight.labels(self.worker).dec()
        if not isinstance(result, dict) or "status" not in result:
            return  # retried or crashed: counted by job_retried / not a result
        workflow = _label(spec.get("workflow_name") or "unnamed")
        self.jobs.labels(self.worker, workflow, _label(result["status"])).inc()
        timings = result.get("timings") or {}
        self.queue_wait.labels(self.worker, workflow).observe(
            max(0.0, timings.get("queue_seconds", 0.0))
        )
        self.execution.labels(self.worker, workflow).observe(
            max(0.0, timings.get("run_seconds", 0.0))
        )
        gap = pipeline_gap(result)
        if gap is not None:
            self.idle_gap.labels(self.worker).observe(gap)
        self._observe_nodes(
            spec.get("prompt") or {},
            timings.get("node_durations") or {},
            succeeded=result["status"] == "succeeded",
        )

    def _observe_nodes(
        self, prompt: dict[str, Any], durations: dict[str, float], *, succeeded: bool
    ) -> None:
        for node_id, seconds in durations.items():
            class_type = _label(str((prompt.get(node_id) or {}).get("class_type", "unknown")))
            self.node_seconds.labels(self.worker, class_type).observe(max(0.0, float(seconds)))
            if class_type.endswith(LOADER_SUFFIXES):
                self.model_loads.labels(self.worker, class_type).inc()
        if succeeded and durations:
            cached = sum(1 for node_id in prompt if node_id not in durations)
            self.cache_hits.labels(self.worker).inc(cached)

    def job_retried(self) -> None:
        self.retries.labels(self.worker).inc()

    # -- ComfyUI (main process) -----------------------------------------------------------------

    def comfy_checked(self, healthy: bool, stats: dict[str, Any] | None) -> None:
        self.comfy_up.labels(self.worker).set(1 if healthy else 0)
        if not healthy or not stats:
            return
        system = stats.get("system") or {}
        if isinstance(system.get("ram_free"), int | float):
            self.ram_free.labels(self.worker).set(system["ram_free"])
        for device in stats.get("devices") or []:
            if not isinstance(device, dict):
                continue
            name = _label(str(device.get("index", device.get("name", "?"))))
            if isinstance(device.get("vram_free"), int | float):
                self.vram_free.labels(self.worker, name).set(device["vram_free"])
            if isinstance(device.get("vram_total"), int | float):
                self.vram_total.labels(self.worker, name).set(device["vram_total"])


def connect_job_signals(metrics: WorkerMetrics) -> None:
    """Count the RUN_JOB task's runs from Celery's signals (they fire in the pool child)."""
    from celery import signals

    def prerun(task: Any = None, **_: Any) -> None:
        if getattr(task, "name", None) == RUN_JOB:
            metrics.job_started()

    def postrun(task: Any = None, args: Any = None, retval: Any = None, **_: Any) -> None:
        if getattr(task, "name", None) == RUN_JOB:
            spec = args[0] if args and isinstance(args[0], dict) else {}
            metrics.job_ended(spec, retval)

    def retry(request: Any = None, **_: Any) -> None:
        if getattr(request, "task", None) == RUN_JOB:
            metrics.job_retried()

    signals.task_prerun.connect(prerun, weak=False)
    signals.task_postrun.connect(postrun, weak=False)
    signals.task_retry.connect(retry, weak=False)


def serve(port: int, host: str, directory: str, *, token: str | None) -> int:
    """Serve the sum of every process's samples on ``http://host:port/metrics`` from a daemon
    thread; with ``token`` set, only to ``Authorization: Bearer <token>``. Returns the port."""
    from prometheus_client import make_wsgi_app

    registry = aggregate_registry(directory)
    return serve_wsgi(make_wsgi_app(registry), host, port, token=token)


def serve_wsgi(app: Any, host: str, port: int, *, token: str | None) -> int:
    """Run a WSGI app on a daemon thread behind an optional bearer token; returns the port."""
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    expected = f"Bearer {token}".encode() if token else None

    def guarded(environ: dict[str, Any], start_response: Any) -> Any:
        given = environ.get("HTTP_AUTHORIZATION", "").encode()
        if expected is not None and not hmac.compare_digest(given, expected):
            start_response("401 Unauthorized", [("WWW-Authenticate", "Bearer")])
            return [b"unauthorized\n"]
        return app(environ, start_response)

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    class ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
        daemon_threads = True

    server = make_server(host, port, guarded, ThreadingServer, handler_class=QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return int(server.server_port)


def _label(value: str) -> str:
    return value[:MAX_LABEL]
