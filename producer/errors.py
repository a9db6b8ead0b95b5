"""Errors of the producer side.

```
ProducerError
├── SubmitError(job_ids_sent, job_ids_not_sent, reason)   publishing failed part-way
│   └── JobIdInUse(job_id)                                a reused job id with a different spec
├── UnknownJob(text, matches)                             no job, or several, has this id (prefix)
├── JobTimeout(job_id, seconds, status)                   Job.wait() ran out of time (TimeoutError)
└── WaitTimeout(pending, seconds)                         Farm.as_completed() ran out of time
```
Invalid jobs are refused before anything is sent, with ``comfyfarm.tasks.errors.JobSpecError``.
"""

from __future__ import annotations

from typing import Any


class ProducerError(Exception):
    """Raised when the producer cannot do what was asked."""

    def to_dict(self) -> dict[str, Any]:
        return {"type": type(self).__name__, "message": str(self)}


class UnknownJob(ProducerError):
    """Raised when an id or id prefix names no job this farm knows, or several (``matches``)."""

    def __init__(self, *, text: str, matches: list[str]) -> None:
        self.text = text
        self.matches = matches
        if not matches:
            message = f"unknown job {text!r} (no job of this farm has that id or prefix)"
        else:
            shown = ", ".join(matches[:5]) + (" …" if len(matches) > 5 else "")
            message = f"{text!r} is ambiguous: {len(matches)} jobs start with it ({shown})"
        super().__init__(message)


class SubmitError(ProducerError):
    """Raised when publishing jobs failed part-way: ``job_ids_sent`` are enqueued; of
    ``job_ids_not_sent`` the first batch may be partly enqueued (the broker failed mid-batch)."""

    def __init__(
        self, *, job_ids_sent: list[str], job_ids_not_sent: list[str], reason: str
    ) -> None:
        self.job_ids_sent = job_ids_sent
        self.job_ids_not_sent = job_ids_not_sent
        self.reason = reason
        super().__init__(
            f"submitted {len(job_ids_sent)} job(s), {len(job_ids_not_sent)} not (or not "
            f"certainly) submitted: {reason}"
        )


class JobIdInUse(SubmitError):
    """Raised when a job id is submitted again with a different spec (prompt, inputs, params,
    options). Resubmitting the *same* spec is not an error: it returns the existing job."""

    def __init__(
        self, *, job_id: str, job_ids_sent: list[str], job_ids_not_sent: list[str]
    ) -> None:
        self.job_id = job_id
        super().__init__(
            job_ids_sent=job_ids_sent,
            job_ids_not_sent=job_ids_not_sent,
            reason=f"job id {job_id} is already used by a different job; a reused id must "
            "carry the same spec (it then returns the existing job): choose a new id",
        )


class JobTimeout(ProducerError, TimeoutError):
    """Raised when ``Job.wait()`` times out; the job itself goes on (cancel it if needed)."""

    def __init__(self, *, job_id: str, seconds: float, status: str) -> None:
        self.job_id = job_id
        self.seconds = seconds
        self.status = status
        super().__init__(f"job {job_id} not finished after {seconds:g} s (status: {status})")


class WaitTimeout(ProducerError, TimeoutError):
    """Raised when ``Farm.as_completed()`` runs out of time; ``pending`` jobs go on."""

    def __init__(self, *, pending: list[str], seconds: float) -> None:
        self.pending = pending
        self.seconds = seconds
        more = f" and {len(pending) - 3} more" if len(pending) > 3 else ""
        shown = ", ".join(pending[:3]) + more
        super().__init__(f"{len(pending)} job(s) not finished after {seconds:g} s: {shown}")
