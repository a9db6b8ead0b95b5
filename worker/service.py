"""Starting a worker bound to one ComfyUI: queues, health gating, registry, published node
schemas, the Celery worker.

One worker process per ComfyUI instance (one GPU). It consumes its own queue first
(``comfyfarm.worker.<name>``), then its capability queues, then the shared queue, with the prefork
pool (the only pool where time limits, soft shutdown and terminate all work; see the research
notes).

Pipelining: ComfyUI runs one prompt at a time, so a worker that submits the next prompt only after
the previous one was collected leaves the GPU idle in between. With ``depth`` D the pool has D + 1
processes and prefetch 1, so while one prompt runs, D more are already in ComfyUI's own queue and
start the moment it finishes; collecting a job's outputs overlaps the next job's execution. Each
extra process holds one more job off the shared queue, which bounds how far a worker can get ahead
of idle instances (D jobs).

While ComfyUI does not answer, or the output store cannot be written (``worker.store_health``),
the worker cancels its consumers (so jobs stay in Redis for healthy workers) and adds them back
when both work again. What it already holds but has not started goes back to its queue then, and
whenever a message waits too long for a pool process (ComfyUI stuck on a prompt):
``worker.handback``.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celery import Celery, bootsteps, signals
from celery.exceptions import TimeLimitExceeded
from celery.worker import state as worker_state

from comfyfarm.comfy.client import ComfyClient
from comfyfarm.storage import LocalStore, open_store
from comfyfarm.tasks import multiprocess_metrics
from comfyfarm.tasks.app import make_app
from comfyfarm.tasks.connect import check_tls_trust, redis_client
from comfyfarm.tasks.names import RUN_JOB
from comfyfarm.tasks.redact import redact_url
from comfyfarm.tasks.routing import SHARED_QUEUE, capability_queue, worker_queue
from comfyfarm.tasks.settings import Settings
from comfyfarm.worker import malformed, safe_fetch, takeover, unacked, webhook_sender, webhook_task
from comfyfarm.worker import metrics as worker_metrics
from comfyfarm.worker import task as job_task
from comfyfarm.worker.affinity import AffinityOrder, add_queue, apply_order
from comfyfarm.worker.deps import WorkerDeps
from comfyfarm.worker.handback import HandBack
from comfyfarm.worker.health import HealthMonitor
from comfyfarm.worker.metrics import WorkerMetrics
from comfyfarm.worker.registry import SchemaPublisher, WorkerRegistry
from comfyfarm.worker.runner import cancel_prompt
from comfyfarm.worker.store_health import StoreHealth
from comfyfarm.worker.supervisor import ComfySupervisor, JobCounter, load_warmup_prompt

log = logging.getLogger(__name__)

#: Seconds between the worker's heartbeat events (for Flower; comfyfarm's own is the registry).
EVENT_HEARTBEAT_SECONDS = 10


@dataclass
class WorkerOptions:
    """The command line of ``comfyfarm worker``."""

    comfy_url: str
    name: str
    capabilities: list[str] = field(default_factory=list)
    extra_queues: list[str] = field(default_factory=list)
    health_interval: float = 2.0
    loglevel: str = "INFO"
    depth: int = 1
    metrics_port: int | None = None  # serve Prometheus metrics (worker/metrics.py) when set
    metrics_host: str = "127.0.0.1"
    metrics_token: str | None = None
    comfy_cmd: list[str] | None = None  # run ComfyUI as a child process (worker/supervisor.py)
    comfy_cwd: str | None = None
    comfy_log: str | None = None
    warmup_prompt: str | None = None
    recycle_after_jobs: int | None = None
    recycle_above_mb: int | None = None

    def concurrency(self) -> int:
        """Pool processes: the running prompt plus ``depth`` waiting in ComfyUI's queue."""
        return max(0, self.depth) + 1

    def queues(self) -> list[str]:
        """Own queue first, capabilities next, shared last (the consume order)."""
        ordered = [worker_queue(self.name)]
        ordered += [capability_queue(cap) for cap in self.capabilities]
        ordered += self.extra_queues
        ordered.append(SHARED_QUEUE)
        return list(dict.fromkeys(ordered))


class HealthGate(bootsteps.StartStopStep):  # type: ignore[misc]
    """Consumer bootstep: consume only while ComfyUI is healthy.

    Started after the task consumer exists; stopped and started again by Celery when the broker
    connection is re-established, and shut down (registry entry removed) with the worker.
    """

    requires = ("celery.worker.consumer.tasks:Tasks",)
    monitor: HealthMonitor | None = None
    registry: WorkerRegistry | None = None
    queues: list[str] = []
    affinity: AffinityOrder | None = None  # reorders the queues (worker/affinity.py)
    rds: Any = None
    prefix: str = ""
    concurrency: int = 1  # pool processes: with this many jobs reserved the worker takes no more
    handback: HandBack | None = None  # hands back messages it cannot start (worker/handback.py)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.consuming = True
        self.declared: set[str] = set()  # queues added before: not declared again
        self._stopped_for = "ComfyUI is"
        self._timer: Any = None

    def start(self, consumer: Any) -> None:
        assert self.monitor is not None
        # A restarted consumer consumes what the app selects; our queues are selected again
        # only while healthy (add/cancel keep the selection in step with what we consume).
        self.consuming = bool(consumer.task_consumer and consumer.task_consumer.queues)
        self.current = [q.name for q in consumer.task_consumer.queues] if self.consuming else []
        self.current = self.current or list(self.queues)
        self.declared = set(self.current)  # the consumer declared them when it started
        self._apply(consumer, self.monitor.check())
        self.monitor.start()
        self._timer = consumer.timer.call_repeatedly(
            0.5, self._apply_latest, (consumer,), priority=0
        )

    def _apply_latest(self, consumer: Any) -> None:
        assert self.monitor is not None
        self._apply(consumer, self.monitor.healthy)
        self._hand_back(consumer)
        if self.affinity is not None:
            busy = len(worker_state.reserved_requests) >= self.concurrency
            self.affinity.check_starving(self.rds, self.prefix, busy=busy)
            wanted = self.affinity.order()
            if wanted != self.current:
                if self.consuming:
                    self.current = apply_order(consumer, self.current, wanted, self.declared)
                else:
                    self.current = wanted
        if self.registry is not None and self.registry.outdated():
            self.monitor.poke()  # a job started or ended: tell the registry now

    def _apply(self, consumer: Any, healthy: bool) -> None:
        if healthy and not self.consuming:
            for queue in self.current:
                add_queue(consumer, queue, self.declared)
            self.consuming = True
            log.info("%s back: consuming %s", self._stopped_for, ", ".join(self.current))
        elif not healthy and self.consuming:
            for queue in self.current:
                consumer.cancel_task_queue(queue)
            self.consuming = False
            assert self.monitor is not None
            comfy_down = not self.monitor.comfy_healthy
            self._stopped_for = "ComfyUI is" if comfy_down else "the output store is"
            log.warning("%s unavailable: stopped consuming until it is back", self._stopped_for)

    def _hand_back(self, consumer: Any) -> None:
        """What this worker holds but cannot start goes back to its queue (``worker.handback``):
        all of it while not consuming, what waited too long for a pool process otherwise."""
        if self.handback is None:
            return
        try:
            if self.consuming:
                self.handback.stalled(consumer)
            else:
                self.handback.unstarted(consumer, f"{self._stopped_for} unavailable")
        except Exception:  # never let it stop the health gate's timer; next tick tries again
            log.exception("handing back messages this worker cannot start failed")

    def stop(self, consumer: Any) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.monitor is not None:
            self.monitor.stop()

    def shutdown(self, consumer: Any) -> None:
        self.stop(consumer)
        if self.registry is not None:
            self.registry.remove()


def build_worker_app(
    settings: Settings, options: WorkerOptions, metrics: WorkerMetrics | None = None
) -> Celery:
    """The Celery app of one worker, with the job task and the health gate registered."""
    app = make_app(settings)
    unacked.use_plain_pipelines()
    safe_fetch.install(settings.fetch_poll_seconds)  # a message leaves its queue only as unacked
    deps = WorkerDeps(
        settings,
        comfy_url=options.comfy_url,
        worker_name=options.name,
        client_id=f"comfyfarm-{options.name}-{uuid.uuid4()}",
    )
    job_task.register(app, deps)
    webhook_sender.install(webhook_sender.WebhookSender(app, settings))
    webhook_task.register(app)
    signals.worker_process_init.connect(lambda **_: job_task.warm_up(app, deps), weak=False)
    rds = redis_client(settings)
    malformed.install(app, rds, settings.key_prefix, options.name)
    holding = takeover.install(app, settings, options.name)  # a dead worker's jobs, in seconds
    affinity = AffinityOrder(options.queues(), name=options.name, wait=settings.affinity_wait)
    signals.task_received.connect(lambda request=None, **_: note_received(affinity, request),
                                  weak=False)  # fmt: skip
    registry = WorkerRegistry(
        rds, settings.key_prefix, options.name, comfy_url=redact_url(options.comfy_url),
        queues=options.queues(), capabilities=options.capabilities, holding=holding,
        dynamic=lambda: {"queues": affinity.order(), "loaded": list(affinity.loaded)},
    )  # fmt: skip
    comfy = ComfyClient(options.comfy_url, timeout=5.0)
    schemas = SchemaPublisher(comfy, rds, settings.key_prefix, options.name)

    output_store = open_store(
        settings.storage_url, digest=settings.output_digest, fsync=settings.storage_fsync
    )
    if isinstance(output_store, LocalStore) and not output_store.fsync:
        log.warning(
            "outputs are not fsynced (COMFYFARM_STORAGE_FSYNC=0 or ?fsync=0): a host crash can "
            "lose outputs that results say are stored"
        )
    store = StoreHealth(output_store, options.name, temp_max_age=settings.temp_max_age)

    def on_check(healthy: bool) -> None:
        schemas.update(healthy)  # first: the registry then shows a worker whose schemas exist
        affinity.set_checkpoints(schemas.models.get("checkpoints", []))
        registry.beat(healthy, storage=store.reason)
        if metrics is not None:
            metrics.comfy_checked(healthy, monitor.stats)

    monitor = HealthMonitor(comfy, interval=options.health_interval, on_beat=on_check, store=store)
    HealthGate.monitor = monitor
    HealthGate.registry = registry
    HealthGate.queues = options.queues()
    HealthGate.affinity = affinity
    HealthGate.concurrency = options.concurrency()
    HealthGate.rds = rds
    HealthGate.handback = HandBack()
    HealthGate.prefix = settings.key_prefix
    app.steps["consumer"].add(HealthGate)
    stop_abandoned_prompts(ComfyClient(options.comfy_url, timeout=5.0))
    return app


def note_received(affinity: AffinityOrder, request: Any) -> None:
    """Tell ``affinity`` the checkpoints of a job this worker just took (main process)."""
    try:
        payload = request.args[0] if request is not None and request.args else None
    except Exception:  # a malformed message: worker.malformed deals with it
        return
    prompt = payload.get("prompt") if isinstance(payload, dict) else None
    if isinstance(prompt, dict):
        affinity.received(prompt)


def stop_abandoned_prompts(client: ComfyClient) -> None:
    """When Celery kills the pool child running a job (hard time limit, ``revoke(terminate=True)``)
    the job cannot stop its own prompt: the main process interrupts it on ComfyUI instead, so
    the GPU does not keep working for nobody."""

    def on_revoked(request: Any = None, terminated: bool = False, **_: Any) -> None:
        if terminated and request is not None and request.id:
            cancel_prompt(client, str(request.id))

    def on_failure(task_id: str | None = None, exception: Any = None, **_: Any) -> None:
        if isinstance(exception, TimeLimitExceeded) and task_id:
            cancel_prompt(client, task_id)

    signals.task_revoked.connect(on_revoked, weak=False)
    signals.task_failure.connect(on_failure, weak=False)


def run_worker(settings: Settings, options: WorkerOptions) -> None:
    """Run the worker in this process until it is shut down (SIGTERM: warm, SIGQUIT: soft)."""
    check_tls_trust(settings)  # a certificate that does not verify: one line, not endless retries
    metrics, metrics_dir = None, None
    if options.metrics_port is not None:
        # Before the pool forks and before prometheus_client is first imported.
        metrics_dir = multiprocess_metrics.prepare_multiprocess_dir()
        metrics = worker_metrics.WorkerMetrics(options.name)
        worker_metrics.connect_job_signals(metrics)
        port = worker_metrics.serve(
            options.metrics_port, options.metrics_host, metrics_dir, token=options.metrics_token
        )
        log.info("metrics on http://%s:%d/metrics", options.metrics_host, port)
    supervisor = start_supervised_comfy(options) if options.comfy_cmd else None
    try:
        app = build_worker_app(settings, options, metrics)
        _run_celery(app, options)
    finally:
        if supervisor is not None:
            supervisor.stop()
        if metrics_dir is not None:
            multiprocess_metrics.remove_multiprocess_dir(metrics_dir)


def start_supervised_comfy(options: WorkerOptions) -> ComfySupervisor:
    """Start the worker's own ComfyUI and wait until it answers (and is warmed up)."""
    assert options.comfy_cmd
    jobs = JobCounter()
    jobs.connect(RUN_JOB)
    supervisor = ComfySupervisor(
        command=options.comfy_cmd,
        url=options.comfy_url,
        cwd=options.comfy_cwd,
        log_path=Path(options.comfy_log or f"comfyfarm-logs/comfyui-{options.name}.log"),
        warmup_prompt=load_warmup_prompt(options.warmup_prompt) if options.warmup_prompt else None,
        recycle_after_jobs=options.recycle_after_jobs,
        recycle_above_bytes=(options.recycle_above_mb or 0) << 20 or None,
        jobs=jobs,
    )
    supervisor.start()
    return supervisor


def _run_celery(app: Celery, options: WorkerOptions) -> None:
    app.worker_main(
        [
            "worker",
            "--pool", "prefork",
            "--concurrency", str(options.concurrency()),
            "--hostname", f"{options.name}@%h",
            "--queues", ",".join(options.queues()),
            "--task-events",
            # Flower's worker heartbeat: it counts a worker offline after two missed intervals
            # (the interval travels in the event); 2 s by default was a PUBLISH every 2 s.
            "--heartbeat-interval", str(EVENT_HEARTBEAT_SECONDS),
            "--loglevel", options.loglevel,
            "--without-mingle",
            "--without-gossip",
        ]
    )  # fmt: skip
