"""One upload into the blob store: hashed (BLAKE3) and spooled to a file as it arrives.

The spool is a temporary file, so an upload is never whole in memory, and the size cap is
enforced chunk by chunk. ``commit`` names the blob by its digest and puts the spool under
``blobs/<tenant>/<hex[:2]>/<hex>`` unless that key already holds it (dedup): a rename where the
spool is inside a ``file://`` root, else one streamed write into the store.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import blake3

from comfyfarm.storage.asset_records import check_tenant
from comfyfarm.storage.base import OutputStore
from comfyfarm.storage.blob_errors import BlobError, BlobTooLarge, HashMismatch, InvalidDigest
from comfyfarm.storage.digests import BLAKE3, is_blake3
from comfyfarm.storage.keys import check_key
from comfyfarm.storage.local import LocalStore

BLOBS_DIR = "blobs"
COPY_CHUNK = 1 << 20


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


class BlobWriter:
    """One upload in progress (from ``BlobStore.begin``). Not thread-safe; one owner."""

    def __init__(
        self, store: OutputStore, tenant: str, spool: BinaryIO, spool_path: str, *, max_bytes: int
    ) -> None:
        self._store = store
        self._max_bytes = max_bytes
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
        if self.size + length > self._max_bytes:
            self.abort()
            limit = self._max_bytes
            raise BlobTooLarge(key="", reason=f"upload is over the {limit}-byte limit", limit=limit)
        self._hash.update(chunk)
        spool.write(chunk)
        self.size += length

    @property
    def digest(self) -> str:
        """``blake3:<hex>`` of the bytes written so far (what ``commit`` will name the blob)."""
        return f"{BLAKE3}:{self._hash.hexdigest()}"

    def commit(self, expected_digest: str | None = None) -> tuple[Blob, bool]:
        """Finish the upload: ``(blob, created_new)``, where ``created_new`` is False when the
        tenant already had these bytes. With ``expected_digest``, a different computed digest
        raises ``HashMismatch`` (a malformed one ``InvalidDigest``) and stores nothing."""
        spool = self._open_spool()
        digest = self.digest
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
            created = not self._store.exists(key)
            if created:
                _put(self._store, key, self._spool_path)
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


def _put(store: OutputStore, key: str, spool_path: str) -> None:
    """Store the finished spool file under ``key``: a rename on ``file://`` where possible,
    else one streamed write."""
    if isinstance(store, LocalStore) and store.move_in(key, spool_path):
        return
    with open(spool_path, "rb") as source:
        store.write(key, _chunks(source))


def _chunks(source: BinaryIO) -> Iterator[bytes]:
    while chunk := source.read(COPY_CHUNK):
        yield chunk
