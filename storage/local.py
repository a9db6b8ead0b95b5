"""``file://`` store: outputs as files under a root directory (a local disk or a shared mount).

A write streams into a temporary file in the destination directory, fsyncs it, renames it over
the final name (``os.replace``, atomic on POSIX) and fsyncs the directory: the object is durable
when ``write`` returns. A store opened with ``fsync=False`` (``COMFYFARM_STORAGE_FSYNC=0``, for
storage whose durability is handled elsewhere) skips both fsyncs: still atomic (a reader sees the
whole object or none), but a host crash can lose objects ``write`` said were stored.

Directories are created one level at a time and each is resolved and checked: a symlink that
leads out of the root is refused (``UnsafeKey``) before anything is written through it.

Speed of a large write: BLAKE3 (the default digest, ~0.27 ms of CPU per MiB here) is hashed by
the calling thread as each chunk passes, which costs less than handing chunks to another thread;
SHA-256 (~0.7 ms per MiB with SHA-NI) is the slowest step, behind a loopback socket read or a
page-cache write, so it runs in a helper thread of its own while the calling thread reads the
next chunk and writes it (``_copy``); and the file is written back to disk while it grows
(``_WriteBehind``), so the final fsync waits for the last few MiB instead of the whole file.
Measured against it on a 200 MiB copy from a simulator (2 cores, load 6-8) and no faster:
``sync_file_range(SYNC_FILE_RANGE_WRITE)`` instead of the advice (same speed), an ``fdatasync``
in a background thread every 32 MiB (same or slower), and a writer thread fed 4 MiB blocks
(slowest: each hand-off waits for a core).

A worker killed mid-copy leaves its temporary file (``.comfyfarm-tmp-*``) behind; nothing else
would ever remove it, so workers sweep the ones older than COMFYFARM_TEMP_MAX_AGE
(``sweep_temp``, from ``worker.store_health``).
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import tempfile
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from comfyfarm.storage.base import (
    ObjectNotFound,
    StorageError,
    StorageUnavailable,
    StoreBase,
    StoredObject,
    UnsafeKey,
)
from comfyfarm.storage.digests import DEFAULT_DIGEST, Digest, check_algorithm
from comfyfarm.storage.keys import TEMP_PREFIX, check_key

FILE_MODE = 0o644
# Errors another attempt (later, or on another worker) may not hit: retryable.
# A read-only or permission-denied store is the worker's problem, not the job's: another worker
# (whose store can be written) may succeed, and this one stops consuming (its health probe).
RETRYABLE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.ESTALE, errno.ETIMEDOUT, errno.EAGAIN,
     errno.ENOMEM, errno.EBUSY, errno.EROFS, errno.EACCES, errno.EPERM}
)  # fmt: skip
# Chunks written but not yet hashed, at most: bounds memory when the source outruns the hash.
HASH_BACKLOG = 4
# Start writing the file back to disk after every this many bytes. Measured on a 200 MiB write:
# the final fsync drops from ~100 ms to ~3 ms; windows of 4-32 MiB gave the same speed.
WRITE_BEHIND = 8 << 20


class LocalStore(StoreBase):
    """Files under ``root`` (created on first write); ``digest`` is the algorithm of the
    records' ``hash`` (``blake3``, ``sha256`` or ``none``)."""

    def __init__(
        self, root: str | os.PathLike[str], *, digest: str = DEFAULT_DIGEST, fsync: bool = True
    ) -> None:
        self.root = Path(os.path.abspath(root))
        self.digest = check_algorithm(digest)
        #: Whether writes are durable when they return (file and directory fsynced).
        self.fsync = fsync
        self.url = self.root.as_uri()

    # -- writing ----------------------------------------------------------------------------
    def write(
        self, key: str, chunks: Iterable[bytes], *, content_type: str | None = None
    ) -> StoredObject:
        """Stream ``chunks`` to ``key`` atomically. ``content_type`` is not recorded on disk."""
        path = self.root / check_key(key)
        parent = self._make_parents(key, path.parent)
        digest = Digest(self.digest)
        with _mapped(key):
            fd, tmp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=parent)
        try:
            with open(fd, "wb", buffering=0) as handle:  # unbuffered: chunks go straight to the fd
                # Write-behind also without fsync: on the bench VM a write that leaves its pages
                # dirty runs 5-10 x slower than one that starts their writeback as it goes.
                _copy(key, chunks, _WriteBehind(handle.fileno()), digest)
                if self.fsync:
                    with _mapped(key):
                        os.fsync(handle.fileno())
            with _mapped(key):
                os.chmod(tmp_name, FILE_MODE)
                os.replace(tmp_name, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
            raise
        if self.fsync:
            _fsync_dir(parent)
        return StoredObject(key=key, uri=self.uri(key), bytes=digest.bytes, hash=digest.hash)

    def move_in(self, key: str, source: str | os.PathLike[str]) -> bool:
        """Rename the finished file ``source`` to ``key`` (made durable first), for callers that
        already hold the whole object in a file (the blob store's spool). False, with ``source``
        left in place, when it is on another filesystem and cannot be renamed; ``write`` it then.
        """
        path = self.root / check_key(key)
        parent = self._make_parents(key, path.parent)
        try:
            with _mapped(key):
                if self.fsync:
                    _fsync_file(source)
                os.chmod(source, FILE_MODE)
                os.replace(source, path)
        except StorageError as exc:
            if isinstance(exc.__cause__, OSError) and exc.__cause__.errno == errno.EXDEV:
                return False
            raise
        if self.fsync:
            _fsync_dir(parent)
        return True

    def sweep_temp(self, older_than: float, *, now: float | None = None) -> int:
        """Remove temp files (``.comfyfarm-tmp-*``) not modified for ``older_than`` seconds,
        anywhere under the root (symlinks are not followed); returns how many were removed.
        A file being written is modified all the time, so a live copy is never swept."""
        cutoff = (time.time() if now is None else now) - older_than
        removed = 0
        for directory, _, files in os.walk(self.root, followlinks=False):
            for name in files:
                if not name.startswith(TEMP_PREFIX):
                    continue
                path = os.path.join(directory, name)
                try:
                    if os.lstat(path).st_mtime < cutoff:
                        os.unlink(path)
                        removed += 1
                except OSError:  # gone meanwhile, or not ours to remove: next sweep
                    continue
        return removed

    def _make_parents(self, key: str, parent: Path) -> Path:
        """Create ``parent`` level by level below the root, refusing symlinks that leave it."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # the store itself is broken, not this key: another worker's may do
            raise StorageUnavailable(
                key=key, reason=f"cannot create the store root: {exc}"
            ) from exc
        try:
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
    def open_read(self, key: str, *, offset: int = 0) -> BinaryIO:
        path = self._existing_path(key)
        try:
            stream = path.open("rb")
            if offset:
                stream.seek(offset)
            return stream
        except FileNotFoundError:
            raise ObjectNotFound(key=key, reason="no such file") from None
        except OSError as exc:
            raise _os_error(key, exc) from exc

    def exists(self, key: str) -> bool:
        return self._existing_path(key).is_file()

    def size(self, key: str) -> int:
        try:
            return self._existing_path(key).stat().st_size
        except FileNotFoundError:
            raise ObjectNotFound(key=key, reason="no such file") from None
        except OSError as exc:
            raise _os_error(key, exc) from exc

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


def _fsync_file(path: str | os.PathLike[str]) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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


def _copy(key: str, chunks: Iterable[bytes], sink: _WriteBehind, digest: Digest) -> None:
    """Write every chunk to ``sink`` here while a helper thread feeds it to ``digest``.

    blake3 and hashlib release the GIL for large buffers, so hashing overlaps reading the next
    chunk (a socket) and writing this one, and a copy takes little longer than hashing alone. A
    source of
    one chunk (most images, every ``write_bytes``) is hashed right here, since starting a thread
    would cost more than it saves; so is everything when the store keeps no digests or hashes
    with BLAKE3 (cheaper than the hand-off, see ``Digest.inline``). Chunks must
    not change after they are yielded (bytes cannot). Errors of the source propagate unchanged,
    write errors become StorageErrors; either stops the copy, and the helper thread has ended
    when this returns or raises.
    """
    source = iter(chunks)
    head = list(itertools.islice(source, 2))  # one chunk or less: no thread
    every = itertools.chain(head, source)
    if len(head) < 2 or not digest.enabled or digest.inline:
        for chunk in every:
            digest.update(chunk)
            with _mapped(key):
                sink.write(chunk)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-hash") as hasher:
        backlog: deque[Future[None]] = deque()
        for chunk in every:
            backlog.append(hasher.submit(digest.update, chunk))
            with _mapped(key):
                sink.write(chunk)
            if len(backlog) >= HASH_BACKLOG:
                backlog.popleft().result()
        for hashed in backlog:
            hashed.result()


class _WriteBehind:
    """Writes to ``fd`` and has the kernel start writing each new ``WRITE_BEHIND`` bytes to disk.

    Without it the whole file sits in the page cache until the final fsync, which then waits
    for all of it (~100 ms for 200 MiB on the benchmark disk, while nothing else progresses).
    Where the kernel offers no way to start writeback (no ``posix_fadvise``, e.g. macOS) the
    final fsync does all the work, as before. Durability never depends on this.

    A store that does not fsync uses it too. Measured on the benchmark VM (a Firecracker guest,
    ext4 on virtio-blk, 2 loaded cores), 200 MiB written from memory: left dirty, the pages go in
    at ~100-550 MB/s (fast for the first tens of MiB at best); with their writeback started every
    8 MiB — by this advice, or by ``sync_file_range(SYNC_FILE_RANGE_WRITE)``, which keeps them
    cached — at ~0.8-2.4 GB/s (``comfyfarm bench outputs`` prints both as phases). So it is
    the dirty pages, not page allocation, that cost; the kernel's exact reason was not pinned down.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._written = 0
        self._started = 0  # bytes before this offset are already being written back

    def write(self, chunk: bytes) -> None:
        view = memoryview(chunk).cast("B")
        self._written += view.nbytes
        while view:  # os.write may write less than asked
            view = view[os.write(self.fd, view) :]
        if self._written - self._started >= WRITE_BEHIND:
            _start_writeback(self.fd, self._started, self._written - self._started)
            self._started = self._written


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to write a range of ``fd`` to disk now, without waiting for it.

    On Linux, ``POSIX_FADV_DONTNEED`` starts asynchronous writeback of the range's dirty pages
    (and drops those already clean from the cache, which a render output does not need). It is
    only advice: where it is missing or fails, the final fsync writes the range instead.
    """
    if not hasattr(os, "posix_fadvise"):
        return
    with contextlib.suppress(OSError):
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)
