"""A job's Celery states (PROGRESS, then its final one) written to the Redis result backend in
two commands each.

Celery's ``backend.store_result`` costs five commands and two round trips per write: a GET (so a
late update never overwrites SUCCESS), then MULTI, SETEX, PUBLISH, EXEC. Progress is the most
frequent backend write of a job, and every job ends with one final state, so ``ProgressStore``
keeps the guard and the published message and drops the rest: the same key, value, TTL and
channel as ``store_result``, and a write that never overwrites a task that succeeded —

- the first write of a job is ``SET … NX`` (a job's first delivery has no state yet);
- every later one is ``SET … IFEQ <our last write>`` (``tasks.conditional``): it overwrites only
  our own progress, so a final state written since is never overwritten;
- when either finds something else (a state of an earlier try, or a final state) the write goes
  through a Lua script that reads the state and writes unless it is SUCCESS, as Celery's guard
  does; a server without ``IFEQ`` uses that script every time (four commands);
- then, only if it wrote, one PUBLISH of the value on the key's channel.

The value is built by the backend itself (``encode_result``, ``_get_result_meta`` with the
task's request, ``encode``), so readers see exactly what ``store_result`` would have written;
a FAILURE keeps ``result_failure_expires`` as Celery's does. A backend that is not Redis gets
``store_result``, and so does a final state whose write fails (``store_final``: Celery's own
write then retries as ``result_backend_always_retry`` says).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

import redis
from celery import states
from celery.backends.base import Backend
from celery.backends.redis import RedisBackend

from comfyfarm.tasks.conditional import set_if_equal

log = logging.getLogger(__name__)

#: Tasks whose last write a store remembers: one pool process runs one job at a time, and a
#: task forgotten early only costs its next write the script (a try retried, or ignored, ends
#: without a final state and is never forgotten otherwise).
REMEMBERED = 64

# KEYS[1] = celery-task-meta key; ARGV[1] = encoded meta; ARGV[2] = TTL in s (0: none).
# Returns 0 if the task already succeeded (nothing written), 1 otherwise.
_WRITE = """
local current = redis.call('GET', KEYS[1])
if current then
  local ok, meta = pcall(cjson.decode, current)
  if ok and type(meta) == 'table' and meta['status'] == 'SUCCESS' then return 0 end
end
local ttl = tonumber(ARGV[2])
if ttl and ttl > 0 then
  redis.call('SETEX', KEYS[1], ttl, ARGV[1])
else
  redis.call('SET', KEYS[1], ARGV[1])
end
return 1
"""


class ProgressStore:
    """Writes a task's state as ``backend.store_result`` would.

    One store per process, or per job: it remembers the value it wrote last for each task (what
    ``IFEQ`` compares with) until that task's final state is written."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._script: Any = None
        self._last: OrderedDict[str, bytes] = OrderedDict()  # task id → the value we wrote last
        if isinstance(backend, RedisBackend) and backend.serializer == "json":
            self._script = backend.client.register_script(_WRITE)

    def store(
        self,
        task_id: str,
        result: Any,
        state: str,
        *,
        traceback: str | None = None,
        request: Any = None,
    ) -> bool:
        """Write; False if the task had already succeeded (then nothing is written)."""
        backend = self._backend
        if self._script is None:
            backend.store_result(task_id, result, state, traceback=traceback, request=request)
            return True
        full = backend._get_result_meta(
            result=backend.encode_result(result, state), state=state, traceback=traceback,
            request=request,
        )  # fmt: skip
        full["task_id"] = task_id
        value = backend.encode(full)
        value = value.encode() if isinstance(value, str) else value
        if len(value) > getattr(backend, "_MAX_STR_VALUE_SIZE", len(value)):
            # Celery refuses it with BackendStoreError: let it.
            backend.store_result(task_id, result, state, traceback=traceback, request=request)
            return True
        key = backend.get_key_for_task(task_id)
        ttl = int(_expires(backend, state) or 0)
        written = self._write(task_id, key, value, ttl)
        if state in states.READY_STATES:
            self._last.pop(task_id, None)  # the try's last write: nothing compares with it
        elif written:
            self._remember(task_id, value)
        if written:
            backend.client.publish(key, value)
        return written

    def store_final(
        self,
        task_id: str,
        result: Any,
        state: str,
        *,
        traceback: str | None = None,
        request: Any = None,
    ) -> None:
        """Write a final state (``store``); if Redis fails, Celery's ``store_result`` writes it
        instead, retrying as the backend is configured to (a final state must not be lost to a
        blip). Its guard keeps a SUCCESS already written; only the message on the channel may
        then be missing, which readers' polling covers."""
        try:
            self.store(task_id, result, state, traceback=traceback, request=request)
        except redis.RedisError as exc:
            self._last.pop(task_id, None)
            log.warning("writing the %s state of task %s failed (%s); Celery's store_result "
                        "writes it", state, task_id, exc)  # fmt: skip
            self._backend.store_result(task_id, result, state, traceback=traceback, request=request)

    def _remember(self, task_id: str, value: bytes) -> None:
        self._last[task_id] = value
        self._last.move_to_end(task_id)
        while len(self._last) > REMEMBERED:
            self._last.popitem(last=False)

    def _write(self, task_id: str, key: str, value: bytes, ttl: int) -> bool:
        client, last = self._backend.client, self._last.get(task_id)
        if last is None:
            written: bool | None = bool(client.set(key, value, nx=True, ex=ttl or None))
        else:
            written = set_if_equal(client, key, value, last, px=ttl * 1000)
        if written:
            return True
        return bool(self._script(keys=[key], args=[value, ttl]))


def _expires(backend: Backend, state: str) -> Any:
    """The TTL Celery's Redis backend gives ``state`` (``result_failure_expires`` for FAILURE)."""
    if state == states.FAILURE:
        return getattr(backend, "failure_expires", backend.expires)
    return backend.expires
