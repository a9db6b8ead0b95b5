"""Progress of a running job as Celery shows it: the result backend (producers) and task events
(Flower). The only progress code that knows Celery; ``worker.progress_sender`` decides how often.
"""

from __future__ import annotations

from typing import Any

from celery import Task

from comfyfarm.tasks.models import PROGRESS_STATE, JobProgress
from comfyfarm.tasks.names import PROGRESS_EVENT
from comfyfarm.worker.progress_store import ProgressStore
from comfyfarm.worker.task_backend import JobStatesBackend


class TaskProgressWriter:
    """Progress to the result backend and as task events; called from the job's
    ``ProgressSender`` thread.

    The task's request is thread-local, so its id and hostname are taken here, on the job's
    thread. Backend writes go without the request, so the prompt in the task's args is not
    written and published again with every update (``result_extended``), and in one round trip
    (``worker.progress_store``).
    """

    def __init__(self, task: Task) -> None:
        self._app = task.app
        backend = task.backend
        if isinstance(backend, JobStatesBackend):  # the job task: its final state compares
            self._store = backend.progress_store  # with our last write (worker.task_backend)
        else:
            self._store = ProgressStore(backend)
        self._task_id = task.request.id
        self._hostname = task.request.hostname
        self._retry_policy = task.app.conf.task_publish_retry_policy

    def __call__(self, progress: JobProgress) -> None:
        meta = progress.to_dict()
        if not self._task_id:
            return
        self._store.store(self._task_id, meta, PROGRESS_STATE)
        # Not "worker": event fields become attributes of Flower's task record, and a string
        # there replaces its Worker object (Flower's /api/tasks then fails with HTTP 500).
        # The event's hostname already names the worker.
        with self._app.events.default_dispatcher(hostname=self._hostname) as dispatcher:
            dispatcher.send(
                PROGRESS_EVENT,
                uuid=self._task_id,
                retry=True,
                retry_policy=self._retry_policy,
                **_event_fields(meta),
            )


def _event_fields(meta: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in meta.items() if key != "worker"}
