"""The payloads that cross the broker, in one import: specs in, results and progress out.

Every model is a frozen, JSON-safe dataclass with ``to_dict()`` / ``from_dict()``; ``from_dict``
validates and raises a PayloadError (JobSpecError / JobResultError) whose ``field`` names the
offending field. Definitions live in ``spec``, ``result`` and ``progress``.
"""

from __future__ import annotations

from comfyfarm.tasks.errors import JobResultError, JobSpecError, PayloadError
from comfyfarm.tasks.progress import PHASES, PROGRESS_STATE, JobProgress, Phase
from comfyfarm.tasks.result import JOB_STATUSES, JobResult, JobStatus, OutputRecord, Timings
from comfyfarm.tasks.spec import MAX_PROMPT_BYTES, InputFile, JobSpec, check_prompt, new_job_id

__all__ = [
    "JOB_STATUSES",
    "MAX_PROMPT_BYTES",
    "PHASES",
    "PROGRESS_STATE",
    "InputFile",
    "JobProgress",
    "JobResult",
    "JobResultError",
    "JobSpec",
    "JobSpecError",
    "JobStatus",
    "OutputRecord",
    "PayloadError",
    "Phase",
    "Timings",
    "check_prompt",
    "new_job_id",
]
