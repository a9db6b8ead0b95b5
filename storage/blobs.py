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
record and never a blob, since other assets may share it: the gateway counts who holds each blob
and deletes it when nothing does (``comfyfarm.gateway.blob_refs``). Two uploads of the same new
bytes racing each other both write the same object (writes are atomic and idempotent) and both
report ``created_new``.

Errors: ``blob_errors`` (``BlobError`` and its subclasses, below ``StorageError``).
"""

from __future__ import annotations

import io
import os
import tempfile
import time
from typing import Any, BinaryIO

from comfyfarm.storage.asset_records import (
    MAX_RECORD_BYTES,
    AssetRecord,
    RecordError,
    check_tenant,
    derived_asset_id,
    is_asset_id,
    new_asset_id,
    record_key,
)
from comfyfarm.storage.base import ObjectNotFound, OutputStore
from comfyfarm.storage.blob_errors import (
    BlobError,
    BlobNotFound,
    BlobTooLarge,
    HashMismatch,
    InvalidDigest,
)
from comfyfarm.storage.blob_writer import Blob, BlobWriter, blob_key
from comfyfarm.storage.digests import is_blake3
from comfyfarm.storage.keys import TEMP_PREFIX, key_of_uri
from comfyfarm.storage.local import LocalStore

__all__ = [
    "AssetRecord",
    "Blob",
    "BlobError",
    "BlobNotFound",
    "BlobStore",
    "BlobTooLarge",
    "BlobWriter",
    "HashMismatch",
    "InvalidDigest",
    "RecordError",
    "blob_key",
    "derived_asset_id",
]

SPOOL_DIR = TEMP_PREFIX + "spool"  # inside a file:// root; keys can never name it
# Reading one byte more than a record may have lets from_json refuse an oversized one.
MAX_RECORD_READ = MAX_RECORD_BYTES + 1


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
        return BlobWriter(self.store, tenant, os.fdopen(fd, "wb"), path, max_bytes=self.max_bytes)

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

    def open_read(self, blob: Blob, *, offset: int = 0) -> BinaryIO:
        """A binary stream of the blob's bytes from ``offset`` (0 ≤ offset ≤ size, for HTTP
        ranges; the caller stops after the range's length and closes it). ``BlobNotFound`` if
        the bytes are gone, ValueError for an offset outside the blob."""
        if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= blob.size:
            raise ValueError(f"offset must be between 0 and {blob.size}, not {offset!r}")
        if offset == blob.size and offset:
            return io.BytesIO(b"")  # S3 refuses a range that starts at the end
        try:
            return self.store.open_read(blob.key, offset=offset)
        except ObjectNotFound as exc:
            raise BlobNotFound(key=blob.key, reason=exc.reason) from None

    def uri(self, blob: Blob) -> str:
        """The storage URI of the blob (a worker reads it as an ``InputFile.source``)."""
        return self.store.uri(blob.key)

    def presigned_url(self, blob: Blob, *, expires_seconds: int) -> str | None:
        """A signed HTTPS URL for the blob's bytes where the store can make one (``s3://``),
        valid ``expires_seconds``; None elsewhere (the gateway serves the bytes itself)."""
        presign = getattr(self.store, "presigned_url", None)
        if presign is None:
            return None
        return str(presign(blob.key, expires_seconds=expires_seconds))

    def key_of(self, uri: str) -> str | None:
        """The store key of a URI under this store (e.g. a job output's ``uri``), else None."""
        return key_of_uri(self.store.url, uri)

    # -- asset records ------------------------------------------------------------------------
    def create_asset(
        self,
        tenant: str,
        blob: Blob,
        *,
        name: str,
        mime_type: str,
        metadata: dict[str, Any] | None = None,
        asset_id: str | None = None,
    ) -> AssetRecord:
        """Mint a new asset of ``tenant`` over ``blob`` (a blob of that tenant, or any stored
        object, e.g. a job output: the record keeps the blob's key). The id is random unless
        ``asset_id`` is given (``derived_asset_id`` for outputs; writing it again replaces the
        record). ``RecordError`` names a bad field (name too long, metadata not JSON or over
        16 KiB, …)."""
        record = AssetRecord(
            id=new_asset_id() if asset_id is None else asset_id,
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
