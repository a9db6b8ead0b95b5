"""The output-store contract: a Protocol, the record of a stored object, and the error tree.

```
StorageError(key, reason)          a store could not do what was asked
├── UnsafeKey                      the key is not a safe relative POSIX path (or escapes the root)
├── ObjectNotFound                 nothing is stored under the key
└── StorageUnavailable             retryable: disk full, I/O error, S3 5xx, connection failure,
                                   the worker's store refusing (read-only, EACCES, S3 403)
```

Writes are streamed (never the whole object in memory, except in ``memory://``), atomic (a reader
sees the old object or the complete new one, never a partial one; a failed write leaves nothing
under the key) and idempotent (writing the same bytes to the same key again gives the same object).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol, runtime_checkable


class StorageError(Exception):
    """Raised when an output store cannot do what was asked; ``key`` is the store key involved."""

    def __init__(self, *, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"{key!r}: {reason}" if key else reason)

    def to_dict(self) -> dict[str, Any]:
        return {"type": type(self).__name__, "message": str(self), "key": self.key,
                "reason": self.reason}  # fmt: skip


class UnsafeKey(StorageError):
    """Raised when a key is absolute, has '..'/empty parts, NUL or backslashes, or would resolve
    outside the store root (a symlink)."""


class ObjectNotFound(StorageError):
    """Raised when reading a key under which nothing is stored."""


class StorageUnavailable(StorageError):
    """Raised when the store is unreachable or cannot take data right now (ENOSPC, EIO, S3 5xx,
    connection errors) or this worker's store refuses it (EROFS, EACCES, S3 AccessDenied or
    NoSuchBucket); retrying later, or on another worker, may succeed."""


@dataclass(frozen=True)
class StoredObject:
    """What a write produced: ``bytes`` written and their ``hash`` (``blake3:<hex>``, or
    ``sha256:<hex>`` from a store configured so; see ``digests``), computed while streaming
    (empty from a store configured without digests); ``uri`` names the object for readers
    (``file://``, ``s3://``, ``memory://``)."""

    key: str
    uri: str
    bytes: int
    hash: str

    @property
    def sha256(self) -> str:
        """The SHA-256 hex digest if the store keeps SHA-256, else ``""`` (older readers)."""
        algorithm, _, hexdigest = self.hash.partition(":")
        return hexdigest if algorithm == "sha256" else ""


@runtime_checkable
class OutputStore(Protocol):
    """Where workers put job outputs. Chosen by URL with ``open_store``."""

    url: str

    def write(
        self, key: str, chunks: Iterable[bytes], *, content_type: str | None = None
    ) -> StoredObject: ...

    def write_bytes(
        self, key: str, data: bytes, *, content_type: str | None = None
    ) -> StoredObject: ...

    def read_bytes(self, key: str) -> bytes: ...

    def open_read(self, key: str, *, offset: int = 0) -> BinaryIO:
        """A stream of the object from byte ``offset`` (for HTTP ranges); the caller closes it."""
        ...

    def exists(self, key: str) -> bool: ...

    def size(self, key: str) -> int: ...

    def delete(self, key: str) -> None: ...

    def uri(self, key: str) -> str: ...


class StoreBase:
    """Shared conveniences: ``write_bytes`` and ``read_bytes`` on top of ``write``/``open_read``."""

    url: str

    def write(
        self, key: str, chunks: Iterable[bytes], *, content_type: str | None = None
    ) -> StoredObject:
        raise NotImplementedError

    def open_read(self, key: str, *, offset: int = 0) -> BinaryIO:
        raise NotImplementedError

    def write_bytes(
        self, key: str, data: bytes, *, content_type: str | None = None
    ) -> StoredObject:
        return self.write(key, (data,), content_type=content_type)

    def read_bytes(self, key: str) -> bytes:
        with self.open_read(key) as stream:
            return stream.read()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"
