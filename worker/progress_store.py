"""A PROGRESS state written to Celery's Redis result backend in two commands.

Celery's ``backend.store_result`` costs five commands and two round trips per write: a GET (so a
late update never overwrites SUCCESS), then MULTI, SETEX, PUBLISH, EXEC. Progress is the most
frequent backend write of a job, so ``ProgressStore`` keeps the guard and the published message
and drops the rest: the same key, value, TTL and channel as ``store_result``, and a write that
never overwrites a task that succeeded —

- the first write of a job is ``SET … NX`` (a job's first delivery has no state yet);
- every later one is ``SET … IFEQ <our last write>`` (``tasks.conditional``): it overwrites only
  our own progress, so a final state written since is never overwritten;
- when either finds something else (a state of an earlier try, or a final state) the write goes
  through a Lua script that reads the state and writes unless it is SUCCESS, as Celery's guard
  does; a server without ``IFEQ`` uses that script every time (four commands);
- then, only if it wrote, one PUBLISH of the value on the key's channel.

The value is built by the backend itself (``_get_result_meta`` and ``encode``), so readers see
exactly what ``store_result`` would have written. A backend that is not Redis gets
``store_result``.
"""

from __future__ import annotations

from typing import Any

from celery.backends.base import Backend
from celery.backends.redis import RedisBackend

from comfyfarm.tasks.conditional import set_if_equal

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
    """Writes ``state`` with a result dict for one task id, as ``backend.store_result`` would.

    One store per job: it remembers the value it wrote last (what ``IFEQ`` compares with)."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._script: Any = None
        self._last: dict[str, bytes] = {}  # task id → the value we wrote last
        if isinstance(backend, RedisBackend) and backend.serializer == "json":
            self._script = backend.client.register_script(_WRITE)

    def store(self, task_id: str, meta: dict[str, Any], state: str) -> bool:
        """Write; False if the task had already succeeded (then nothing is written)."""
        backend = self._backend
        if self._script is None:
            backend.store_result(task_id, meta, state)
            return True
        full = backend._get_result_meta(
            result=backend.encode_result(meta, state), state=state, traceback=None, request=None
        )
        full["task_id"] = task_id
        ttl = int(backend.expires or 0)
        value = backend.encode(full)
        value = value.encode() if isinstance(value, str) else value
        key = backend.get_key_for_task(task_id)
        if not self._write(task_id, key, value, ttl):
            return False
        self._last[task_id] = value
        backend.client.publish(key, value)
        return True

    def _write(self, task_id: str, key: str, value: bytes, ttl: int) -> bool:
        client, last = self._backend.client, self._last.get(task_id)
        if last is None:
            written: bool | None = bool(client.set(key, value, nx=True, ex=ttl or None))
        else:
            written = set_if_equal(client, key, value, last, px=ttl * 1000)
        if written:
            return True
        return bool(self._script(keys=[key], args=[value, ttl]))
