"""Names that producers and workers must spell the same way."""

from __future__ import annotations

#: The job task: run a JobSpec on the worker's ComfyUI. args = [JobSpec.to_dict()], no kwargs.
RUN_JOB = "comfyfarm.run_job"

#: A finished job's completion webhook, delivered apart from the job (``worker.webhook_task``).
#: args = [{"url": str, "job_id": str, "result": JobResult.to_dict()}], no kwargs.
DELIVER_WEBHOOK = "comfyfarm.deliver_webhook"

#: Custom Celery event a worker may send (``task.send_event(PROGRESS_EVENT, ...)``) so Flower shows
#: the task in state PROGRESS; Flower does not read the result backend.
PROGRESS_EVENT = "task-progress"
