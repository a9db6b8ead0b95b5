"""How ``LocalStore.write`` copies: BLAKE3 inline, SHA-256 in a helper thread, write-behind, errors,
cleanup."""

from __future__ import annotations

import array
import errno
import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import blake3
import pytest

from comfyfarm.storage import LocalStore, StorageError, StorageUnavailable
from comfyfarm.storage import local as local_module
from comfyfarm.storage.digests import Digest

KEY = "job/out.bin"
needs_fadvise = pytest.mark.skipif(
    not hasattr(os, "posix_fadvise"), reason="no posix_fadvise on this platform"
)


def pieces(sizes: list[int]) -> list[bytes]:
    """Chunks of the given sizes, each with different content."""
    return [bytes((n + i) % 256 for i in range(size)) for n, size in enumerate(sizes)]


def b3(data: bytes) -> str:
    return "blake3:" + blake3.blake3(data).hexdigest()


def hash_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("store-hash")]


def files_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


@pytest.mark.parametrize(
    "sizes",
    [
        [],
        [0],
        [1] * 300,
        [7, 0, 4099, 1, 0, 65537, 3, 8191, 12289, 2],
        [1 << 20, 1, (1 << 20) - 1, 3 * (1 << 20) + 5],
    ],
    ids=["nothing", "one-empty", "many-single-bytes", "odd-and-empty", "around-a-mib"],
)
@pytest.mark.parametrize("algorithm", ["blake3", "sha256"])
def test_bytes_and_digest_are_exact_for_any_chunking(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sizes: list[int], algorithm: str
) -> None:
    """Size, digest and file content match the data, whatever the chunk sizes and windows."""
    monkeypatch.setattr(local_module, "WRITE_BEHIND", 4096)  # many write-behind windows
    chunks = pieces(sizes)
    data = b"".join(chunks)
    stored = LocalStore(tmp_path, digest=algorithm).write(KEY, iter(chunks))
    expected = b3(data) if algorithm == "blake3" else "sha256:" + hashlib.sha256(data).hexdigest()
    assert (stored.bytes, stored.hash) == (len(data), expected)
    assert (tmp_path / KEY).read_bytes() == data
    assert hash_threads() == []


def test_short_os_writes_are_completed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the OS writes less than asked, the rest is written too."""
    real_write = os.write

    def short_write(fd: int, data: bytes | memoryview) -> int:
        return real_write(fd, data[:1000])

    monkeypatch.setattr(os, "write", short_write)
    data = b"".join(pieces([5000, 1, 2500]))
    stored = LocalStore(tmp_path).write(KEY, [data[:5000], data[5000:5001], data[5001:]])
    monkeypatch.setattr(os, "write", real_write)
    assert (tmp_path / KEY).read_bytes() == data
    assert stored.hash == b3(data)


def test_hash_lags_at_most_the_backlog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A slow hash holds the source back: never more than HASH_BACKLOG chunks read, not hashed."""
    backlog = local_module.HASH_BACKLOG
    permits = threading.Semaphore(0)  # one per chunk the hash may finish
    hashed: list[int] = []
    real_update = Digest.update

    def slow_update(self: Digest, chunk: bytes) -> None:
        # The timeout only turns a copy that never reads ahead (a deadlock here) into a failure.
        assert permits.acquire(timeout=30), "the source was not read while the hash was behind"
        real_update(self, chunk)
        hashed.append(len(chunk))

    monkeypatch.setattr(Digest, "update", slow_update)
    ahead: list[int] = []

    def chunks() -> Iterator[bytes]:
        for pulled in range(1, 21):
            ahead.append(pulled - len(hashed))
            if pulled >= backlog:
                permits.release()  # let the hash fall exactly `backlog` chunks behind
            yield b"x" * 100
        permits.release(backlog)

    stored = LocalStore(tmp_path, digest="sha256").write(KEY, chunks())
    assert max(ahead) == backlog
    assert stored.bytes == 2000 and len(hashed) == 20


@needs_fadvise
def test_writeback_starts_window_by_window(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each WRITE_BEHIND bytes written, writeback of exactly the new range is started."""
    monkeypatch.setattr(local_module, "WRITE_BEHIND", 10_000)
    calls: list[tuple[int, int, int]] = []
    monkeypatch.setattr(
        os, "posix_fadvise", lambda fd, off, n, advice: calls.append((off, n, advice))
    )
    LocalStore(tmp_path).write(KEY, pieces([6000] * 9))  # 54,000 bytes
    advice = os.POSIX_FADV_DONTNEED
    assert calls == [(0, 12_000, advice), (12_000, 12_000, advice), (24_000, 12_000, advice),
                     (36_000, 12_000, advice)]  # fmt: skip


def test_failed_writeback_advice_is_harmless(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """posix_fadvise failing (or missing) changes nothing: the final fsync writes everything."""
    monkeypatch.setattr(local_module, "WRITE_BEHIND", 1000)

    def refuse(fd: int, offset: int, length: int, advice: int) -> None:
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(os, "posix_fadvise", refuse, raising=False)
    data = b"".join(pieces([3000] * 3))
    assert LocalStore(tmp_path).write(KEY, [data]).bytes == len(data)
    monkeypatch.delattr(os, "posix_fadvise")
    assert LocalStore(tmp_path).write("job/again.bin", [data]).bytes == len(data)
    assert (tmp_path / KEY).read_bytes() == (tmp_path / "job/again.bin").read_bytes() == data


@pytest.mark.parametrize("error", [RuntimeError("source died"), ConnectionResetError("reset")])
def test_source_error_mid_stream_propagates_unchanged(tmp_path: Path, error: Exception) -> None:
    """A source error (even an OSError) is re-raised as is; no temp file, no thread is left."""

    def chunks() -> Iterator[bytes]:
        yield from pieces([1000] * 10)
        raise error

    with pytest.raises(type(error)) as caught:
        LocalStore(tmp_path, digest="sha256").write(KEY, chunks())
    assert caught.value is error
    assert files_in(tmp_path / "job") == []
    assert hash_threads() == []


@pytest.mark.parametrize(
    ("code", "raised"),
    [
        (errno.ENOSPC, StorageUnavailable),
        (errno.EROFS, StorageUnavailable),  # the worker's store: another worker's may do
        (errno.ENAMETOOLONG, StorageError),
    ],
)
def test_write_error_becomes_a_storage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, raised: type[StorageError]
) -> None:
    """An OSError from writing the file names the key; the copy stops and leaves nothing."""
    real_write = os.write
    writes = 0

    def failing_write(fd: int, data: bytes | memoryview) -> int:
        nonlocal writes
        writes += 1
        if writes == 3:
            raise OSError(code, os.strerror(code))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", failing_write)
    with pytest.raises(StorageError) as caught:
        LocalStore(tmp_path, digest="sha256").write(KEY, iter(pieces([1000] * 10)))
    monkeypatch.setattr(os, "write", real_write)
    assert type(caught.value) is raised
    assert caught.value.key == KEY and errno.errorcode[code] in str(caught.value)
    assert writes == 3
    assert files_in(tmp_path / "job") == []
    assert hash_threads() == []


def test_hash_error_stops_the_write(tmp_path: Path) -> None:
    """A chunk the digest refuses (here an array) fails the write from the hash thread."""
    chunks = [b"ok", array.array("B", b"not bytes"), b"more"]
    with pytest.raises(TypeError, match="chunks must be bytes"):
        LocalStore(tmp_path, digest="sha256").write(KEY, chunks)  # type: ignore[arg-type]
    assert files_in(tmp_path / "job") == []
    assert hash_threads() == []


@pytest.mark.parametrize("sizes", [[], [0], [300_000]])
def test_a_source_of_at_most_one_chunk_is_hashed_without_a_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sizes: list[int]
) -> None:
    """Small outputs (one chunk) and write_bytes skip the hash thread and are still exact."""

    def no_threads(*args: object, **kwargs: object) -> None:
        raise AssertionError("a thread was started for a one-chunk copy")

    monkeypatch.setattr(local_module, "ThreadPoolExecutor", no_threads)
    data = b"".join(pieces(sizes))
    stored = LocalStore(tmp_path, digest="sha256").write(KEY, iter(pieces(sizes)))
    assert stored.bytes == len(data) and stored.hash == "sha256:" + hashlib.sha256(data).hexdigest()
    assert (tmp_path / KEY).read_bytes() == data


def test_blake3_is_hashed_inline_without_a_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A many-chunk copy into a BLAKE3 store hashes in the calling thread (no hand-off)."""

    def no_threads(*args: object, **kwargs: object) -> None:
        raise AssertionError("a hash thread was started for BLAKE3")

    monkeypatch.setattr(local_module, "ThreadPoolExecutor", no_threads)
    chunks = pieces([70_000] * 20)
    stored = LocalStore(tmp_path).write(KEY, iter(chunks))
    assert stored.hash == b3(b"".join(chunks))
