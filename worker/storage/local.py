"""``file://`` store: outputs as files under a root directory (a local disk or a shared mount).

A write streams into a temporary file in the destination directory, fsyncs it, renames it over
the final name (``os.replace``, atomic on POSIX) and fsyncs the directory. Directories are created
one level at a time and each is resolved and checked: a symlink that leads out of the root is
refused (``UnsafeKey``) before anything is written through it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from worker.storage.base import (
    Digest,
    ObjectNotFound,
    StorageError,
    StorageUnavailable,
    StoreBase,
    StoredObject,
    UnsafeKey,
)
from worker.storage.keys import TEMP_PREFIX, check_key

FILE_MODE = 0o644
# Errors another attempt (later, or on another worker) may not hit: retryable.
RETRYABLE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.ESTALE, errno.ETIMEDOUT, errno.EAGAIN,
     errno.ENOMEM, errno.EBUSY}
)  # fmt: skip


class LocalStore(StoreBase):
    """Files under ``root`` (created on first write)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(os.path.abspath(root))
        self.url = self.root.as_uri()

    # -- writing ----------------------------------------------------------------------------
    def write(
        self, key: str, chunks: Iterable[bytes], *, content_type: str | None = None
    ) -> StoredObject:
        """Stream ``chunks`` to ``key`` atomically. ``content_type`` is not recorded on disk."""
        path = self.root / check_key(key)
        parent = self._make_parents(key, path.parent)
        digest = Digest()
        with _mapped(key):
            fd, tmp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                _drain(chunks, lambda chunk: _absorb(key, handle, digest, chunk))
                with _mapped(key):
                    handle.flush()
                    os.fsync(handle.fileno())
            with _mapped(key):
                os.chmod(tmp_name, FILE_MODE)
                os.replace(tmp_name, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
            raise
        _fsync_dir(parent)
        return StoredObject(key=key, uri=self.uri(key), bytes=digest.bytes, sha256=digest.sha256)

    def _make_parents(self, key: str, parent: Path) -> Path:
        """Create ``parent`` level by level below the root, refusing symlinks that leave it."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            real_root = self.root.resolve()
            current = self.root
            for part in parent.relative_to(self.root).parts:
                current = current / part
                if not current.exists() and not current.is_symlink():
                    with contextlib.suppress(FileExistsError):
                        current.mkdir()
                self._check_inside(key, current, real_root)
                if not current.is_dir():
                    raise StorageError(key=key, reason=f"{part!r} exists and is not a directory")
        except OSError as exc:
            raise _os_error(key, exc) from exc
        return current

    # -- reading ----------------------------------------------------------------------------
    def open_read(self, key: str) -> BinaryIO:
        path = self._existing_path(key)
        try:
            return path.open("rb")
        except FileNotFoundError:
            raise ObjectNotFound(key=key, reason="no such file") from None
        except OSError as exc:
            raise _os_error(key, exc) from exc

    def exists(self, key: str) -> bool:
        return self._existing_path(key).is_file()

    def delete(self, key: str) -> None:
        """Remove ``key``; removing a missing key is not an error."""
        path = self._existing_path(key)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise _os_error(key, exc) from exc

    def uri(self, key: str) -> str:
        return (self.root / check_key(key)).as_uri()

    def path(self, key: str) -> Path:
        """The file path of ``key`` (checked to stay inside the root)."""
        return self._existing_path(key)

    def _existing_path(self, key: str) -> Path:
        path = self.root / check_key(key)
        self._check_inside(key, path, self.root.resolve())
        return path

    @staticmethod
    def _check_inside(key: str, path: Path, real_root: Path) -> None:
        if not path.resolve().is_relative_to(real_root):
            raise UnsafeKey(key=key, reason="resolves outside the store root (symlink)")


@contextlib.contextmanager
def _mapped(key: str) -> Iterator[None]:
    """OSErrors of our own file operations become StorageErrors (retryable ones Unavailable)."""
    try:
        yield
    except OSError as exc:
        raise _os_error(key, exc) from exc


def _os_error(key: str, exc: OSError) -> StorageError:
    reason = f"{exc.strerror or exc} ({errno.errorcode.get(exc.errno or 0, exc.errno)})"
    if exc.errno in RETRYABLE_ERRNOS:
        return StorageUnavailable(key=key, reason=reason)
    return StorageError(key=key, reason=reason)


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable; some filesystems cannot fsync a directory, which is fine."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _absorb(key: str, handle: BinaryIO, digest: Digest, chunk: bytes) -> None:
    digest.update(chunk)
    with _mapped(key):
        handle.write(chunk)


def _drain(chunks: Iterable[bytes], consume: Callable[[bytes], None]) -> None:
    """Feed every chunk to ``consume`` in a helper thread while the next chunk is being read.

    Reading (a socket), hashing and writing all release the GIL, so overlapping them roughly
    halves the time of a large copy; at most two chunks are in memory at once. Errors of the
    source propagate unchanged; errors of ``consume`` stop the copy.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-write") as pool:
        pending: Future[None] | None = None
        for chunk in chunks:
            if pending is not None:
                pending.result()
            pending = pool.submit(consume, chunk)
        if pending is not None:
            pending.result()
