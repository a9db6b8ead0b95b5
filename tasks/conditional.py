"""Compare-and-set in ONE Redis command where the server has it, a Lua script where it does not.

A lease renewal ("extend it if it is still mine"), its release ("delete it if it is still
mine") and a progress write ("overwrite it if it still holds my last progress") are each an
atomic compare-and-set. As Lua scripts they cost EVALSHA plus every command inside (Valkey and
Redis count those too): three commands. Valkey 8.1 has ``SET key value IFEQ expected`` and
Valkey 9.0 ``DELIFEQ key expected``, one command each. Whether a server has them is learned from
the first try (an error answer: it does not) and remembered per client, so an older server costs
one refused command per client, then the script as before.
"""

from __future__ import annotations

import weakref

import redis

_SET_IFEQ: weakref.WeakKeyDictionary[redis.Redis, bool] = weakref.WeakKeyDictionary()
_DELIFEQ: weakref.WeakKeyDictionary[redis.Redis, bool] = weakref.WeakKeyDictionary()


def set_if_equal(
    client: redis.Redis, key: str, value: str | bytes, expected: str | bytes, *, px: int = 0
) -> bool | None:
    """``SET key value IFEQ expected [PX px]``: True if set, False if the key did not hold
    ``expected`` (or did not exist), None if the server has no ``IFEQ`` (use a script)."""
    if _SET_IFEQ.get(client) is False:
        return None
    args: list[str | bytes | int] = ["SET", key, value, "IFEQ", expected]
    if px > 0:
        args += ["PX", px]
    try:
        answer = client.execute_command(*args)  # type: ignore[no-untyped-call]
    except redis.ResponseError as exc:
        _refused(exc)
        _SET_IFEQ[client] = False
        return None
    _SET_IFEQ[client] = True
    return answer is not None and answer is not False


def delete_if_equal(client: redis.Redis, key: str, expected: str | bytes) -> bool | None:
    """``DELIFEQ key expected``: True if deleted, False if the key did not hold ``expected``,
    None if the server has no ``DELIFEQ`` (use a script)."""
    if _DELIFEQ.get(client) is False:
        return None
    try:
        answer = client.execute_command("DELIFEQ", key, expected)  # type: ignore[no-untyped-call]
    except redis.ResponseError as exc:
        _refused(exc)
        _DELIFEQ[client] = False
        return None
    _DELIFEQ[client] = True
    return bool(answer)


def _refused(exc: redis.ResponseError) -> None:
    """An error about the key, not the command, is the caller's (re-raised)."""
    if str(exc).startswith("WRONGTYPE"):
        raise exc
