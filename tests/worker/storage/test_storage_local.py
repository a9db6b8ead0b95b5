"""file:// specifics: atomic rename, no temp files left, symlinks cannot lead out of the root."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from comfyfarm.storage import LocalStore, StorageError, StorageUnavailable, UnsafeKey
from comfyfarm.storage.keys import TEMP_PREFIX


def test_files_land_under_the_root(tmp_path: Path) -> None:
    """Keys map to paths under the root, readable by others (0644), directories created."""
    store = LocalStore(tmp_path / "out")
    stored = store.write_bytes("renders/job/9_0_a.png", b"png")
    path = tmp_path / "out/renders/job/9_0_a.png"
    assert path.read_bytes() == b"png"
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
    assert stored.uri == path.as_uri()
    assert store.url == (tmp_path / "out").as_uri()


def test_failed_write_leaves_no_temp_file(tmp_path: Path) -> None:
    """An interrupted write removes its temporary file."""
    store = LocalStore(tmp_path)

    def chunks() -> Iterator[bytes]:
        yield b"x" * 1000
        raise RuntimeError("source died")

    with pytest.raises(RuntimeError):
        store.write("job/a.png", chunks())
    assert [p.name for p in (tmp_path / "job").iterdir()] == []


def test_readers_never_see_partial_files(tmp_path: Path) -> None:
    """While a write is in progress the final name holds the old content (or nothing)."""
    store = LocalStore(tmp_path)
    store.write_bytes("job/a.png", b"old")
    seen = []

    def chunks() -> Iterator[bytes]:
        yield b"new-1"
        seen.append((tmp_path / "job/a.png").read_bytes())
        yield b"new-2"

    store.write("job/a.png", chunks())
    assert seen == [b"old"]
    assert store.read_bytes("job/a.png") == b"new-1new-2"
    assert not [p for p in (tmp_path / "job").iterdir() if p.name.startswith(TEMP_PREFIX)]


def test_symlinked_directory_out_of_root_is_refused(tmp_path: Path) -> None:
    """A directory symlink pointing outside the root is not written through, nor created in."""
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    (root / "evil").symlink_to(outside)
    store = LocalStore(root)
    with pytest.raises(UnsafeKey):
        store.write_bytes("evil/x.png", b"x")
    with pytest.raises(UnsafeKey):
        store.write_bytes("evil/newdir/x.png", b"x")
    assert list(outside.iterdir()) == []


def test_symlinked_file_out_of_root_is_not_read(tmp_path: Path) -> None:
    """A file symlink to outside the root cannot be read, checked or deleted through the store."""
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    root = tmp_path / "root"
    root.mkdir()
    (root / "leak.txt").symlink_to(secret)
    store = LocalStore(root)
    for operation in (store.read_bytes, store.exists, store.delete):
        with pytest.raises(UnsafeKey):
            operation("leak.txt")
    assert secret.read_text() == "secret"


def test_symlinks_inside_the_root_are_fine(tmp_path: Path) -> None:
    """A symlinked root, or a link between directories inside it, works normally."""
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    store = LocalStore(tmp_path / "link")
    store.write_bytes("a/b.txt", b"ok")
    (real / "alias").symlink_to(real / "a")
    assert store.read_bytes("alias/b.txt") == b"ok"


def test_a_file_in_the_way_of_a_directory(tmp_path: Path) -> None:
    """A key whose directory part is an existing file fails with StorageError."""
    store = LocalStore(tmp_path)
    store.write_bytes("job", b"I am a file")
    with pytest.raises(StorageError):
        store.write_bytes("job/a.png", b"x")


def test_disk_full_is_retryable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC while writing raises StorageUnavailable (retryable) and leaves nothing."""
    store = LocalStore(tmp_path)
    real_fsync = os.fsync

    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(StorageUnavailable, match="ENOSPC"):
        store.write_bytes("job/a.png", b"x")
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert list((tmp_path / "job").iterdir()) == []


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS, errno.EPERM])
def test_a_store_that_refuses_writes_is_retryable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    """EACCES / EROFS / EPERM are the worker's store, not the job: StorageUnavailable, so the
    job is retried on a worker whose store can be written."""
    store = LocalStore(tmp_path)

    def denied(src: str, dst: str) -> None:
        raise PermissionError(code, os.strerror(code))

    monkeypatch.setattr(os, "replace", denied)
    with pytest.raises(StorageUnavailable, match=errno.errorcode[code]):
        store.write_bytes("a.png", b"x")


def test_a_store_root_that_cannot_be_made_is_unavailable(tmp_path: Path) -> None:
    """A root under a regular file (a mount that is missing) fails as StorageUnavailable."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("file")
    with pytest.raises(StorageUnavailable, match="cannot create the store root"):
        LocalStore(blocker / "out").write_bytes("a.png", b"x")


def test_stale_temp_files_are_swept_and_fresh_ones_kept(tmp_path: Path) -> None:
    """sweep_temp removes temp files older than the age given, anywhere under the root, and
    leaves newer temp files and every output alone."""
    store = LocalStore(tmp_path)
    store.write_bytes("job/9_0_a.png", b"png")
    stale = tmp_path / "job" / f"{TEMP_PREFIX}killed"
    fresh = tmp_path / f"{TEMP_PREFIX}writing"
    stale.write_bytes(b"x" * 100)
    fresh.write_bytes(b"y")
    hour_ago = stale.stat().st_mtime - 3600
    os.utime(stale, (hour_ago, hour_ago))

    assert store.sweep_temp(1800) == 1

    assert not stale.exists() and fresh.exists()
    assert (tmp_path / "job/9_0_a.png").read_bytes() == b"png"
