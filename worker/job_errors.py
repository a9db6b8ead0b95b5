"""Why a job did not succeed, as one tree: retry it, or record it as failed.

::

    JobError(cause)                the job ended without a result; ``cause`` is what was raised
    ├── Retryable                  the same job may succeed later or on another worker
    │   └── (classified)           ComfyRetryable (unreachable, 5xx, prompt lost),
    │                              StorageUnavailable, InputUnavailable, the farm's Redis
    │                              unreachable or read-only (a Sentinel failover in progress)
    └── Permanent                  running the same job again gives the same answer
        ├── JobTimeout             the job ran past the worker's time limit
        └── (classified)           ComfyPermanent (rejected, node error, timeout, ...),
                                   every other StorageError, every other InputFileError

Asking "may this job be retried?" is ``isinstance(classify(exc), Retryable)``, in the Celery
task and in direct mode alike (``worker.policy``); nothing else keeps a list of error types.

Why one ``classify()`` table rather than making the client's and the store's errors subclass
these roots: those trees belong to parts below the job (``comfy``, ``storage``) and are drawn
around their own boundaries; two of them raise their *root* as the permanent case and have a
retryable child (``StorageError`` / ``StorageUnavailable``, ``InputFileError`` /
``InputUnavailable``). Subclassing would make ``StorageUnavailable`` both ``Permanent`` and
``Retryable``, or would rename classes whose names are in every stored result. So the mapping
is one ordered table here (children before their family), and errors of the job itself
(``JobTimeout``) join the tree by subclassing. Anything not in the table is a bug, not a job
outcome: ``classify`` returns None and the caller lets it propagate with its traceback.
"""

from __future__ import annotations

from typing import Any

import redis.exceptions

from comfyfarm.comfy.errors import ComfyPermanent, ComfyRetryable
from comfyfarm.storage.base import StorageError, StorageUnavailable
from comfyfarm.worker.inputs import InputFileError, InputUnavailable


class JobError(Exception):
    """Raised (or built by ``classify``) when a job ends without a result; ``cause`` is the
    error that ended it, whose ``to_dict()`` is the job result's ``error``."""

    def __init__(self, message: str = "", *, cause: BaseException | None = None) -> None:
        super().__init__(message or str(cause or ""))
        self.cause = cause

    def to_dict(self) -> dict[str, Any]:
        """The error as a job result shows it: the cause's own ``to_dict()`` when it has one."""
        to_dict = getattr(self.cause, "to_dict", None)
        if callable(to_dict):
            return dict(to_dict())
        source = self if self.cause is None else self.cause
        return {"type": type(source).__name__, "message": str(source)}


class Retryable(JobError):
    """Raised when the failure is about where or when the job ran, not about the job."""


class Permanent(JobError):
    """Raised when the job itself failed; running it again gives the same answer."""


class JobTimeout(Permanent):
    """Raised when the job ran past the worker's time limit (Celery's soft limit fired before
    the runner's own deadline)."""

    def __init__(self, *, limit: object) -> None:
        self.limit = limit
        super().__init__(f"the job ran past its time limit ({limit})")


#: Foreign error families → their place in the tree; first match wins, so each family's
#: retryable child comes before the family itself.
#: The farm's own Redis (lease, ledger, progress, results) unreachable or read-only, e.g. during
#: a Sentinel failover: the job itself is fine; deliver it again once Redis answers (the ledger
#: and ComfyUI's own record keep it from a second POST).
REDIS_FAILOVER: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
)

_FAMILIES: tuple[tuple[type[BaseException], type[JobError]], ...] = (
    *((family, Retryable) for family in REDIS_FAILOVER),
    (ComfyRetryable, Retryable),
    (ComfyPermanent, Permanent),
    (StorageUnavailable, Retryable),
    (StorageError, Permanent),
    (InputUnavailable, Retryable),
    (InputFileError, Permanent),
)


def classify(exc: BaseException) -> JobError | None:
    """``exc`` as a job error (itself if it already is one), or None when it is not a job
    outcome at all (a bug: let it propagate)."""
    if isinstance(exc, JobError):
        return exc
    for family, kind in _FAMILIES:
        if isinstance(exc, family):
            return kind(cause=exc)
    return None


class JobFailed(Exception):
    """Raised (and recorded by Celery as FAILURE) when a job ends in a failure.

    The message is what Flower shows ("ExecutionFailed: node 3 (KSampler): ..."); ``error`` is
    the JobResult's error dict. Celery stores only the message, so the JobResult itself is kept
    under ``comfyfarm.tasks.keys.job_result_key`` for producers.
    """

    def __init__(self, message: str, *, job_id: str = "", error: dict[str, Any] | None = None):
        super().__init__(message)
        self.job_id = job_id
        self.error = error or {}


class JobCancelled(JobFailed):
    """Raised (recorded by Celery as FAILURE) when a job was cancelled while it ran."""
