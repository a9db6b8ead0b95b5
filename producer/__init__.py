"""Producers: the Python API that enqueues jobs into the farm and follows them.

``Farm`` submits (``submit``, ``submit_many``), follows many jobs at once (``as_completed``) and
looks at the farm (``status``, ``dead_letters``);
``Job`` follows one job (``status``, ``progress``, ``wait``, ``result``, ``cancel``).
Never imports worker or WebSocket code: a producer machine needs only Celery and Redis.
"""

from __future__ import annotations

from comfyfarm.producer.build import build_spec
from comfyfarm.producer.errors import (
    JobIdInUse,
    JobTimeout,
    ProducerError,
    SubmitError,
    UnknownJob,
    WaitTimeout,
)
from comfyfarm.producer.farm import Farm
from comfyfarm.producer.job import CancelOutcome, Job
from comfyfarm.producer.status import FarmStatus, QueueDepth, RunningJob, WorkerStatus

__all__ = [
    "CancelOutcome",
    "Farm",
    "FarmStatus",
    "Job",
    "JobIdInUse",
    "JobTimeout",
    "ProducerError",
    "QueueDepth",
    "RunningJob",
    "SubmitError",
    "UnknownJob",
    "WaitTimeout",
    "WorkerStatus",
    "build_spec",
]
