"""Errors of the blob store (``blobs``), below the storage tree.

```
StorageError (base)
├── UnsafeKey                    a tenant that is not a safe path part
└── BlobError                    a blob operation was refused
    ├── BlobTooLarge             the upload passed max_bytes (the spool is gone)
    ├── HashMismatch             the expected digest is not the computed one (nothing stored)
    │   └── InvalidDigest        the expected digest is not blake3:<64 hex> at all
    └── BlobNotFound             a blob's bytes are not in the store (also an ObjectNotFound)
```
Errors of the store itself (``StorageUnavailable`` …) pass through unchanged.
"""

from __future__ import annotations

from comfyfarm.storage.base import ObjectNotFound, StorageError


class BlobError(StorageError):
    """Raised when a blob operation is refused (too large, wrong digest, missing bytes)."""


class BlobTooLarge(BlobError):
    """Raised when an upload passes ``max_bytes``; ``limit`` is that cap."""

    def __init__(self, *, key: str, reason: str, limit: int) -> None:
        self.limit = limit
        super().__init__(key=key, reason=reason)


class HashMismatch(BlobError):
    """Raised when the caller's expected digest differs from the computed one."""

    def __init__(self, *, key: str, reason: str, expected: str, actual: str) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(key=key, reason=reason)


class InvalidDigest(HashMismatch):
    """Raised when an expected digest is not ``blake3:<64 lowercase hex>``."""


class BlobNotFound(BlobError, ObjectNotFound):
    """Raised when reading a blob whose bytes are not in the store."""
