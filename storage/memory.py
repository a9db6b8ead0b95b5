"""``memory://name`` store: objects in a process-wide dict, for tests and the demo.

Stores opened with the same name share their objects (within one process). Writes collect the
chunks and publish the object only when the iterator is exhausted, so a failed write leaves
nothing, as in the other stores; by nature the whole object is held in memory.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterable
from typing import BinaryIO

from comfyfarm.storage.base import ObjectNotFound, StoreBase, StoredObject
from comfyfarm.storage.digests import DEFAULT_DIGEST, Digest, check_algorithm
from comfyfarm.storage.keys import check_key

_LOCK = threading.Lock()
_STORES: dict[str, dict[str, tuple[bytes, str | None]]] = {}


class MemoryStore(StoreBase):
    """Objects in memory under ``name``; ``digest`` as in ``LocalStore``."""

    def __init__(self, name: str = "default", *, digest: str = DEFAULT_DIGEST) -> None:
        self.name = name
        self.digest = check_algorithm(digest)
        self.url = f"memory://{name}"
        with _LOCK:
            self._objects = _STORES.setdefault(name, {})

    def write(
        self, key: str, chunks: Iterable[bytes], *, content_type: str | None = None
    ) -> StoredObject:
        check_key(key)
        digest = Digest(self.digest)
        buffer = io.BytesIO()
        for chunk in chunks:
            digest.update(chunk)
            buffer.write(chunk)
        with _LOCK:
            self._objects[key] = (buffer.getvalue(), content_type)
        return StoredObject(key=key, uri=self.uri(key), bytes=digest.bytes, hash=digest.hash)

    def open_read(self, key: str) -> BinaryIO:
        return io.BytesIO(self._get(key)[0])

    def read_bytes(self, key: str) -> bytes:
        return self._get(key)[0]

    def content_type(self, key: str) -> str | None:
        return self._get(key)[1]

    def size(self, key: str) -> int:
        return len(self._get(key)[0])

    def exists(self, key: str) -> bool:
        check_key(key)
        with _LOCK:
            return key in self._objects

    def delete(self, key: str) -> None:
        check_key(key)
        with _LOCK:
            self._objects.pop(key, None)

    def uri(self, key: str) -> str:
        return f"{self.url}/{check_key(key)}"

    def keys(self) -> list[str]:
        with _LOCK:
            return sorted(self._objects)

    def clear(self) -> None:
        with _LOCK:
            self._objects.clear()

    def _get(self, key: str) -> tuple[bytes, str | None]:
        check_key(key)
        with _LOCK:
            try:
                return self._objects[key]
            except KeyError:
                raise ObjectNotFound(key=key, reason="no such object") from None
