"""Content-addressed blobs and the asset records over them, per tenant, in any output store.

The Comfy API v2 gateway keeps uploaded inputs here. An upload streams through a ``BlobWriter``:
each chunk is hashed (BLAKE3) and appended to a spool file, never held whole in memory, and the
size cap is enforced as the bytes arrive. ``commit`` names the blob by its digest and moves it to
``blobs/<tenant>/<hex[:2]>/<hex>``; if that key already holds it, the spool is dropped (dedup,
``created_new`` False). Blobs are deduplicated per tenant, never across tenants: a tenant can
only learn that bytes exist by having uploaded them itself.

On a ``file://`` store the spool lives inside the store root (a reserved temporary folder), so
committing is a rename, not a second copy. Elsewhere (``s3://``, ``memory://``) the spool is
written to the store as one streamed object.

Assets are small JSON records (``asset_records``) naming a blob; deleting an asset removes its
record and never a blob, since other assets may share it (nothing collects unreferenced blobs
yet). Two uploads of the same new bytes racing each other both write the same object (writes
are atomic and idempotent) and both report ``created_new``.

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

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import blake3

from comfyfarm.storage.asset_records import (
    MAX_RECORD_BYTES,
    AssetRecord,
    RecordError,
    check_tenant,
    is_asset_id,
    new_asset_id,
    record_key,
)
from comfyfarm.storage.base import ObjectNotFound, OutputStore, StorageError
from comfyfarm.storage.digests import BLAKE3, is_blake3
from comfyfarm.storage.keys import TEMP_PREFIX, check_key
from comfyfarm.storage.local import LocalStore

BLOBS_DIR = "blobs"
SPOOL_DIR = TEMP_PREFIX + "spool"  # inside a file:// root; keys can never name it
COPY_CHUNK = 1 << 20
# Reading one byte more than a record may have lets from_json refuse an oversized one.
MAX_RECORD_READ = MAX_RECORD_BYTES + 1


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


@dataclass(frozen=True)
class Blob:
    """Immutable bytes: ``digest`` (``blake3:<hex>``), ``size`` in bytes, store ``key``."""

    digest: str
    size: int
    key: str


def blob_key(tenant: str, digest: str) -> str:
    """``blobs/<tenant>/<hex[:2]>/<hex>`` for a ``blake3:<hex>`` digest."""
    check_tenant(tenant)
    if not is_blake3(digest):
        raise InvalidDigest(key=str(digest)[:80], reason="not blake3:<64 lowercase hex>",
                            expected=str(digest)[:80], actual="")  # fmt: skip
    hexdigest = digest.partition(":")[2]
    return check_key(f"{BLOBS_DIR}/{tenant}/{hexdigest[:2]}/{hexdigest}")


class BlobStore:
    """Blobs and asset records in ``store``; uploads larger than ``max_bytes`` are refused.
    ``spool_dir`` holds uploads in progress (default: inside a ``file://`` root, else the
    system's temporary folder). Synchronous: call it from a thread in async code."""

    def __init__(self, store: OutputStore, *, max_bytes: int, spool_dir: str | None = None) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
            raise ValueError(f"max_bytes must be a positive integer, not {max_bytes!r}")
        self.store = store
        self.max_bytes = max_bytes
        self._spool_dir = spool_dir

    # -- blobs --------------------------------------------------------------------------------
    def begin(self, tenant: str) -> BlobWriter:
        """A writer for one upload of ``tenant``: ``write`` chunks, then ``commit`` or ``abort``
        (or use it as a context manager, which aborts unless committed)."""
        check_tenant(tenant)
        directory = self._spool_directory()
        fd, path = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=directory)
        return BlobWriter(self, tenant, os.fdopen(fd, "wb"), path)

    def find(self, tenant: str, digest: str) -> Blob | None:
        """The blob of ``tenant`` with this ``blake3:<hex>`` digest, or None (also for a
        malformed digest, or bytes only another tenant has)."""
        check_tenant(tenant)
        if not is_blake3(digest):
            return None
        key = blob_key(tenant, digest)
        try:
            return Blob(digest=digest, size=self.store.size(key), key=key)
        except ObjectNotFound:
            return None

    def open_read(self, blob: Blob) -> BinaryIO:
        """A binary stream of the blob's bytes (close it); ``BlobNotFound`` if they are gone."""
        try:
            return self.store.open_read(blob.key)
        except ObjectNotFound as exc:
            raise BlobNotFound(key=blob.key, reason=exc.reason) from None

    def uri(self, blob: Blob) -> str:
        """The storage URI of the blob (a worker reads it as an ``InputFile.source``)."""
        return self.store.uri(blob.key)

    # -- asset records ------------------------------------------------------------------------
    def create_asset(
        self,
        tenant: str,
        blob: Blob,
        *,
        name: str,
        mime_type: str,
        metadata: dict[str, Any] | None = None,
    ) -> AssetRecord:
        """Mint a new asset of ``tenant`` over ``blob`` (a blob of that tenant, or any stored
        object, e.g. a job output: the record keeps the blob's key). ``RecordError`` names a
        bad field (name too long, metadata not JSON or over 16 KiB, …)."""
        record = AssetRecord(
            id=new_asset_id(),
            tenant=check_tenant(tenant),
            digest=blob.digest,
            size=blob.size,
            name=name,
            mime_type=mime_type,
            metadata=dict(metadata or {}),
            created_at=time.time(),
            key=blob.key,
        )
        self.store.write_bytes(
            record_key(tenant, record.id), record.to_json(), content_type="application/json"
        )
        return record

    def get_asset(self, tenant: str, asset_id: str) -> AssetRecord | None:
        """The asset ``asset_id`` of ``tenant``, or None: unknown, another tenant's, malformed
        id, or a record in the store that fails its checks."""
        check_tenant(tenant)
        if not is_asset_id(asset_id):
            return None
        key = record_key(tenant, asset_id)
        try:
            with self.store.open_read(key) as stream:
                raw = stream.read(MAX_RECORD_READ)
        except ObjectNotFound:
            return None
        try:
            record = AssetRecord.from_json(raw)
        except RecordError:
            return None
        if record.tenant != tenant or record.id != asset_id:
            return None
        return record

    def delete_asset(self, tenant: str, asset_id: str) -> bool:
        """Remove the record of ``asset_id`` (never its blob); False if there was none."""
        if self.get_asset(tenant, asset_id) is None:
            return False
        self.store.delete(record_key(tenant, asset_id))
        return True

    def blob_of(self, record: AssetRecord) -> Blob:
        """The blob an asset names (read it with ``open_read``, point a worker at ``uri``)."""
        return Blob(digest=record.digest, size=record.size, key=record.key)

    # -- internals ----------------------------------------------------------------------------
    def _spool_directory(self) -> str | None:
        if self._spool_dir is not None:
            return self._spool_dir
        if isinstance(self.store, LocalStore):
            directory = self.store.root / SPOOL_DIR
            directory.mkdir(parents=True, exist_ok=True)
            return str(directory)
        return None  # the system's temporary folder

    def _put(self, key: str, spool_path: str) -> None:
        """Store the finished spool file under ``key``: a rename on ``file://`` where possible,
        else one streamed write."""
        if isinstance(self.store, LocalStore) and self.store.move_in(key, spool_path):
            return
        with open(spool_path, "rb") as source:
            self.store.write(key, _chunks(source))


class BlobWriter:
    """One upload in progress (from ``BlobStore.begin``). Not thread-safe; one owner."""

    def __init__(self, owner: BlobStore, tenant: str, spool: BinaryIO, spool_path: str) -> None:
        self._owner = owner
        self.tenant = tenant
        self._spool: BinaryIO | None = spool
        self._spool_path = spool_path
        self._hash = blake3.blake3()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        """Hash and spool ``chunk``; ``BlobTooLarge`` (and the upload aborted) past the cap."""
        spool = self._open_spool()
        if not isinstance(chunk, bytes | bytearray | memoryview):
            raise TypeError(f"chunks must be bytes, not {type(chunk).__name__}")
        length = memoryview(chunk).nbytes
        if self.size + length > self._owner.max_bytes:
            self.abort()
            limit = self._owner.max_bytes
            raise BlobTooLarge(key="", reason=f"upload is over the {limit}-byte limit", limit=limit)
        self._hash.update(chunk)
        spool.write(chunk)
        self.size += length

    def commit(self, expected_digest: str | None = None) -> tuple[Blob, bool]:
        """Finish the upload: ``(blob, created_new)``, where ``created_new`` is False when the
        tenant already had these bytes. With ``expected_digest``, a different computed digest
        raises ``HashMismatch`` (a malformed one ``InvalidDigest``) and stores nothing."""
        spool = self._open_spool()
        digest = f"{BLAKE3}:{self._hash.hexdigest()}"
        if expected_digest is not None and expected_digest != digest:
            self.abort()
            shown = str(expected_digest)[:80]
            if not is_blake3(expected_digest):
                reason = f"expected digest {shown!r} is not blake3:<64 lowercase hex>"
                raise InvalidDigest(key="", reason=reason, expected=shown, actual=digest)
            reason = f"expected {shown}, computed {digest}"
            raise HashMismatch(key="", reason=reason, expected=shown, actual=digest)
        key = blob_key(self.tenant, digest)
        try:
            spool.close()
            created = not self._owner.store.exists(key)
            if created:
                self._owner._put(key, self._spool_path)
        finally:
            self.abort()  # drops the spool file if it is still there
        return Blob(digest=digest, size=self.size, key=key), created

    def abort(self) -> None:
        """Drop the upload and its spool file; safe to call more than once."""
        spool, self._spool = self._spool, None
        if spool is not None:
            with contextlib.suppress(OSError):
                spool.close()
        with contextlib.suppress(FileNotFoundError):
            Path(self._spool_path).unlink()

    @property
    def closed(self) -> bool:
        return self._spool is None

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.abort()

    def _open_spool(self) -> BinaryIO:
        if self._spool is None:
            raise BlobError(key="", reason="this upload was already committed or aborted")
        return self._spool


def _chunks(source: BinaryIO) -> Iterator[bytes]:
    while chunk := source.read(COPY_CHUNK):
        yield chunk
