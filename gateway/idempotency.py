"""Single-use ``Idempotency-Key``s, exactly as the contract words them.

Reject-on-duplicate, not record-and-replay: the first request that presents a key claims it
(``SET NX`` — atomic, so of two concurrent duplicates exactly one wins) for 24 h; every later
request presenting it, whatever its body, is rejected ``422 idempotency_key_reuse``. A claim is
released when its submission definitively fails without creating a job (a validation error,
``queue_full``), so a corrected retry may use the key again; when the outcome is unknown (a 5xx)
the key stays claimed and the caller should look for the job instead.

Keys are per tenant and stored hashed (``<prefix>gw:idem:<tenant>:<sha256>``): what a client
sends as a key is never written to Redis verbatim.
"""

from __future__ import annotations

import hashlib

import redis.asyncio as aioredis

from comfyfarm.gateway.errors import ApiError, invalid_request

KEY_SECONDS = 24 * 3600
MAX_KEY_LENGTH = 255


class IdempotencyClaim:
    """A claimed key; ``release()`` gives it back (definitive failure)."""

    def __init__(self, client: aioredis.Redis, key: str) -> None:
        self._client = client
        self._key = key

    async def release(self) -> None:
        await self._client.delete(self._key)


async def claim(
    client: aioredis.Redis, prefix: str, tenant: str, untrusted_key: str
) -> IdempotencyClaim:
    """Claim ``untrusted_key`` for ``tenant``; ApiError 422 when it was presented before."""
    if not untrusted_key or len(untrusted_key) > MAX_KEY_LENGTH or not untrusted_key.isprintable():
        raise invalid_request(
            f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} printable characters",
            field="Idempotency-Key",
        )
    digest = hashlib.sha256(untrusted_key.encode()).hexdigest()
    key = f"{prefix}gw:idem:{tenant}:{digest}"
    if not await client.set(key, b"1", nx=True, ex=KEY_SECONDS):
        raise ApiError(
            422,
            "idempotency_key_reuse",
            "this Idempotency-Key was already used (keys are single-use for 24 h): look up the "
            "job it created with GET /api/v2/jobs instead of resubmitting",
        )
    return IdempotencyClaim(client, key)
