"""A PROGRESS state written to Celery's Redis result backend in one round trip.

Celery's ``backend.store_result`` costs five commands and two round trips per write: a GET (so a
late update never overwrites SUCCESS), then MULTI, SETEX, PUBLISH, EXEC. Progress is the most
frequent backend write of a job, so ``ProgressStore`` does the same in one Lua script: the same
key, value, TTL and channel, the same SUCCESS guard, atomically and in one round trip. The value
is built by the backend itself (``_get_result_meta`` and ``encode``), so readers see exactly what
``store_result`` would have written. A backend that is not Redis gets ``store_result``.
"""

from __future__ import annotations

from typing import Any

from celery.backends.base import Backend
from celery.backends.redis import RedisBackend

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
redis.call('PUBLISH', KEYS[1], ARGV[1])
return 1
"""


class ProgressStore:
    """Writes ``state`` with a result dict for one task id, as ``backend.store_result`` would."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._script: Any = None
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
        return bool(self._script(keys=[backend.get_key_for_task(task_id)], args=[value, ttl]))
