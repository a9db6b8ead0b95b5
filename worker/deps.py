"""What the job task depends on: built once at worker start and passed in, never module globals.

``WorkerDeps`` is made in the worker's main process, before the pool forks. The clients it
hands out (ComfyUI, output store, Redis) are opened in each pool process on first use
(``open``): a socket or connection pool made before the fork would be shared by accident.
Tests pass their own factories and runner instead of patching anything.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import redis

from comfyfarm.comfy.client import ComfyClient
from comfyfarm.comfy.limits import ComfyLimits
from comfyfarm.storage import OutputStore, open_store
from comfyfarm.tasks.connect import redis_client
from comfyfarm.tasks.keyspace import cancel_key
from comfyfarm.tasks.models import JobProgress, JobResult, JobSpec
from comfyfarm.tasks.settings import Settings
from comfyfarm.worker.cancel_watch import CancelWatch, JobCancelCheck
from comfyfarm.worker.ledger import JobLedger
from comfyfarm.worker.live_outputs import OutputAnnouncer, PreviewSender
from comfyfarm.worker.policy import FarmPolicy
from comfyfarm.worker.runner import JobContext, SubmissionLedger, run_job

Runner = Callable[[JobSpec, JobContext], JobResult]


@dataclass(frozen=True)
class Opened:
    """One pool process's clients and policy."""

    client: ComfyClient
    store: OutputStore
    redis: redis.Redis
    policy: FarmPolicy
    #: The cancel requests pushed to this process (one subscription for all its jobs).
    cancels: CancelWatch
    #: One WebSocket identity per pool process: with pipelining several processes follow
    #: prompts on the same ComfyUI, and ComfyUI keeps only the newest socket of a client id.
    client_id: str


class WorkerDeps:
    """Settings, the ComfyUI this worker is bound to, and how to open what a job needs."""

    def __init__(
        self,
        settings: Settings,
        *,
        comfy_url: str,
        worker_name: str,
        client_id: str,
        open_client: Callable[[str], ComfyClient] | None = None,
        open_output_store: Callable[[str], OutputStore] | None = None,
        open_redis: Callable[[Settings], redis.Redis] = redis_client,
        run: Runner = run_job,
    ) -> None:
        self.settings = settings
        self.comfy_url = comfy_url
        self.worker_name = worker_name
        self.client_id = client_id
        self.run = run
        # By default the client enforces the size caps of the settings (comfy/limits.py).
        limits = ComfyLimits.from_settings(settings)
        self._open_client = open_client or partial(ComfyClient, limits=limits)
        # By default the store records the digest the settings ask for (COMFYFARM_OUTPUT_DIGEST)
        # and fsyncs as they say (COMFYFARM_STORAGE_FSYNC).
        self._open_store = open_output_store or partial(
            open_store, digest=settings.output_digest, fsync=settings.storage_fsync
        )
        self._open_redis = open_redis
        self._opened: tuple[int, Opened] | None = None

    def open(self) -> Opened:
        """This process's clients, opened on its first call (again after a fork)."""
        pid = os.getpid()
        if self._opened is None or self._opened[0] != pid:
            rds = self._open_redis(self.settings)
            opened = Opened(
                client=self._open_client(self.comfy_url),
                store=self._open_store(self.settings.storage_url),
                redis=rds,
                policy=FarmPolicy(rds, self.settings, worker_name=self.worker_name),
                cancels=CancelWatch(rds, self.settings.key_prefix),
                client_id=f"{self.client_id}-{pid}",
            )
            self._opened = (pid, opened)
        return self._opened[1]

    def cancel_check(self, job_id: str, *, ledger: JobLedger | None = None) -> JobCancelCheck:
        """Whether the cancel of ``job_id`` was requested (pushed, see ``worker.cancel_watch``);
        ``close`` it when the job ends. With the try's ``ledger`` the first check reads the flag
        in the ledger's MGET (one command for both, not an EXISTS and a GET)."""
        first_ask = None if ledger is None else ledger.cancel_requested
        return self.open().cancels.check(job_id, first_ask=first_ask)

    def job_ledger(self, job_id: str) -> JobLedger:
        """One try's view of the submission ledger entry of ``job_id`` (``worker.ledger``)."""
        return JobLedger(
            self.open().policy.ledger, job_id, cancel_key(self.settings.key_prefix, job_id)
        )

    def job_context(
        self,
        spec: JobSpec,
        *,
        on_progress: Callable[[JobProgress], None],
        attempts: int,
        cancel_requested: Callable[[], bool],
        ledger: SubmissionLedger | None = None,
    ) -> JobContext:
        """The runner's context for ``spec`` in this process; ``ledger`` defaults to the
        process's (``job_ledger`` gives one that reads once per try)."""
        opened = self.open()
        outputs = OutputAnnouncer(opened.redis, self.settings, spec.job_id)
        return JobContext(
            client=opened.client,
            store=opened.store,
            client_id=opened.client_id,
            worker_name=self.worker_name,
            on_progress=on_progress,
            on_output=outputs,
            on_outputs_end=outputs.close,
            on_preview=PreviewSender(opened.redis, self.settings, spec.job_id).offer,
            cancel_requested=cancel_requested,
            attempts=attempts,
            ledger=opened.policy.ledger if ledger is None else ledger,
        )

    def wait_for_redis(self, timeout: float) -> bool:
        """Until the farm's Redis answers (True) or ``timeout`` passes (False): after a Sentinel
        failover the client finds the new primary on its next connection."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return bool(self.open().redis.ping())
            except redis.RedisError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.5)  # Redis itself is what we wait for: no event to await
