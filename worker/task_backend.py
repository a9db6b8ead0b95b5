"""The RUN_JOB task's result backend: the app's own, except that the job's final state is written
in two commands (``worker.progress_store``) instead of Celery's five.

Celery writes a task's final state from its trace: ``backend.mark_as_done`` (SUCCESS) and
``backend.mark_as_failure`` (FAILURE), each a ``store_result``: GET (the guard), MULTI, SETEX,
PUBLISH, EXEC. A job has already written its progress through a ``ProgressStore``, which knows
its last write, so its final state can be one ``SET … IFEQ <that write>`` and one PUBLISH: it
overwrites only our own progress, and when it finds anything else (another try's state) the
script writes unless the task already succeeded, as Celery's guard does.

The task keeps ``ignore_result`` off and Celery keeps deciding *when* and *what* to store: this
backend is handed exactly the arguments ``store_result`` would be (the return value or the
exception, its traceback, the request that ``result_extended`` reads), builds the same value
from them, and then lets the app's backend do the rest of ``mark_as_*`` (chord and errback
handling) without storing. Task events (``task-succeeded``, ``task-failed``) are sent by the
worker's main process as before. Only the job's own outcomes take this path: a success, and a
``JobFailed``/``JobCancelled`` with no chain to fail after it; any other error (a bug, a lost
worker, a time limit) is stored by Celery itself. A write that fails falls back to
``store_result`` (``ProgressStore.store_final``).

Everything else (reads, ``AsyncResult``, retries, revokes) goes to the app's backend unchanged:
it is looked up on every use, so each pool process (and thread) uses its own, as Celery does.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, states

from comfyfarm.worker.progress_store import ProgressStore


class JobStatesBackend:
    """The app's result backend with the job's final states written by a ``ProgressStore``
    (see the module docstring). ``own_failures``: the exceptions that are the job's outcomes."""

    def __init__(self, app: Celery, *, own_failures: tuple[type[BaseException], ...]) -> None:
        self._app = app
        self._own_failures = own_failures
        self._states: tuple[int, Any, ProgressStore] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._app.backend, name)

    @property
    def progress_store(self) -> ProgressStore:
        """This process's store: its progress writes and final states share what it wrote last."""
        backend, pid = self._app.backend, os.getpid()
        if self._states is None or self._states[0] != pid or self._states[1] is not backend:
            self._states = (pid, backend, ProgressStore(backend))
        return self._states[2]

    def mark_as_done(
        self,
        task_id: str,
        result: Any,
        request: Any = None,
        store_result: bool = True,
        state: str = states.SUCCESS,
    ) -> None:
        if store_result and not getattr(request, "ignore_result", False):
            self.progress_store.store_final(task_id, result, state, request=request)
        self._app.backend.mark_as_done(task_id, result, request, store_result=False, state=state)

    def mark_as_failure(
        self,
        task_id: str,
        exc: BaseException,
        traceback: str | None = None,
        request: Any = None,
        store_result: bool = True,
        call_errbacks: bool = True,
        state: str = states.FAILURE,
    ) -> None:
        chained = bool(getattr(request, "chain", None))  # failing a chain stores its tasks too
        if store_result and isinstance(exc, self._own_failures) and not chained:
            store = self.progress_store
            store.store_final(task_id, exc, state, traceback=traceback, request=request)
            store_result = False
        self._app.backend.mark_as_failure(
            task_id, exc, traceback, request=request, store_result=store_result,
            call_errbacks=call_errbacks, state=state,
        )  # fmt: skip
