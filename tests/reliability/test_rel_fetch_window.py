"""The job a worker is fetching when it is SIGKILLed still runs.

kombu's Redis transport fetched with ``BRPOP`` (the message left its queue list at once) and
recorded it in ``unacked`` only after the reply had been read, one event-loop turn later: a
worker killed in between took the message with it, in no queue and not in ``unacked``
(celery/celery#7950, celery/kombu#305; the 1,000-job soak at the defaults met it once in 40
kills). Workers now block on doorbells and take messages with an atomic script
(``worker.safe_fetch``), so a blocked ``BRPOP`` hands out a token, never a job.

Here the window is held open on purpose: the worker is stopped (SIGSTOP) while its ``BRPOP``
blocks, the job is submitted (Redis hands the stopped worker's socket whatever the ``BRPOP``
pops), and the worker is killed. Another worker runs the job.
"""

from __future__ import annotations

import os
import signal
import time

import redis
from farm_kit import WorkerFactory, wait_until

from comfyfarm.producer import Farm
from comfyfarm.tasks.settings import Settings
from comfyfarm.workflows import prepare_jobs

#: The job stays in its queue (only a doorbell token went to the victim), so the survivor's
#: first fetch finds it; the margin is for a loaded machine.
RECOVERY_SECONDS = 45.0


def _blocked_brpop(admin: redis.Redis) -> bool:
    return any(
        client.get("cmd") == "brpop" and "b" in client.get("flags", "")
        for client in admin.client_list()
    )


def test_a_job_fetched_by_a_worker_killed_before_recording_it_still_runs(
    settings: Settings, workers: WorkerFactory, start_sim, farm: Farm
) -> None:
    victim = workers.start(start_sim("--job-ms", "100", "--load-ms", "0"), "victim")
    assert victim.proc.process is not None
    group = victim.proc.process.pid  # its own session: the group of main process and pool
    admin = redis.Redis.from_url(settings.broker_url)

    def stopped_while_blocked() -> bool:
        """SIGSTOP the worker while its BRPOP blocks (kombu's BRPOP times out every second: try
        until one is caught still blocked after the stop)."""
        if not _blocked_brpop(admin):
            return False
        os.killpg(group, signal.SIGSTOP)
        time.sleep(0.05)  # the stop has no event to wait on; the server's view is polled next
        if _blocked_brpop(admin):
            return True
        os.killpg(group, signal.SIGCONT)
        return False

    wait_until(stopped_while_blocked, 30, "the victim's BRPOP caught blocked")
    [job] = farm.submit_many(prepare_jobs("empty_invert", schema=None, sweeps=["color=7..7"]))
    wait_until(lambda: not _blocked_brpop(admin), 10, "Redis to hand the job to the victim")
    os.killpg(group, signal.SIGKILL)
    victim.proc.process.wait()

    workers.start(start_sim("--job-ms", "100", "--load-ms", "0"), "survivor")
    result = job.wait(RECOVERY_SECONDS)
    assert result.status == "succeeded"
