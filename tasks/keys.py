"""The farm's own Redis keys and the helpers that use them, in one import for workers and producers.

Key names live in ``keyspace`` (the table of keys is there); cancellation in ``control``; job
leases in ``lease``; the worker registry in ``registry``; dead letters in ``deadletter``.
Every helper takes the Redis client and the key prefix (``settings.key_prefix``) explicitly.
"""

from __future__ import annotations

from comfyfarm.tasks.control import cancel_reason, cancel_requested, clear_cancel, request_cancel
from comfyfarm.tasks.deadletter import (
    DeadLetter,
    count_dead_letters,
    list_dead_letters,
    push_dead_letter,
)
from comfyfarm.tasks.keyspace import (
    cancel_key,
    celery_result_key,
    dead_letter_key,
    job_key,
    job_result_key,
    lease_key,
    store_failure_count_key,
    submission_count_key,
    submission_key,
    worker_key,
    workers_index_key,
)
from comfyfarm.tasks.lease import Lease, LeaseKeeper
from comfyfarm.tasks.registry import WorkerInfo, list_workers, register_worker, unregister_worker

__all__ = [
    "DeadLetter",
    "Lease",
    "LeaseKeeper",
    "WorkerInfo",
    "cancel_key",
    "celery_result_key",
    "cancel_reason",
    "cancel_requested",
    "clear_cancel",
    "count_dead_letters",
    "dead_letter_key",
    "job_key",
    "job_result_key",
    "lease_key",
    "store_failure_count_key",
    "submission_count_key",
    "submission_key",
    "list_dead_letters",
    "list_workers",
    "push_dead_letter",
    "register_worker",
    "request_cancel",
    "unregister_worker",
    "worker_key",
    "workers_index_key",
]
