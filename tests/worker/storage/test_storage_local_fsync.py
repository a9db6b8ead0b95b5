"""file:// durability: every write is fsynced (file and directory) unless the store is opened
without it (``fsync=False``, ``?fsync=0``, ``COMFYFARM_STORAGE_FSYNC=0``)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from comfyfarm.storage import LocalStore, open_store
from comfyfarm.storage.digests import Digest
from comfyfarm.storage.keys import TEMP_PREFIX
from comfyfarm.storage.local import WRITE_BEHIND
from comfyfarm.tasks.errors import SettingsError
from comfyfarm.tasks.settings import Settings
from comfyfarm.worker.deps import WorkerDeps

MIB = 1 << 20


class FsyncCalls:
    """Wraps ``os.fsync`` (and ``os.posix_fadvise``): which inodes were synced, how often
    writeback was started; the real calls still run."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.files: list[int] = []
        self.directories: list[int] = []
        self.advice = 0
        real_fsync = os.fsync

        def fsync(fd: int) -> None:
            info = os.fstat(fd)
            (self.directories if stat.S_ISDIR(info.st_mode) else self.files).append(info.st_ino)
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", fsync)
        if hasattr(os, "posix_fadvise"):
            real_fadvise = os.posix_fadvise

            def fadvise(fd: int, offset: int, length: int, advice: int) -> None:
                self.advice += 1
                real_fadvise(fd, offset, length, advice)

            monkeypatch.setattr(os, "posix_fadvise", fadvise)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> FsyncCalls:
    return FsyncCalls(monkeypatch)


def big_chunks() -> Iterator[bytes]:
    """Enough 1 MiB chunks for the write-behind to start writeback more than once."""
    for index in range(2 * WRITE_BEHIND // MIB + 1):
        yield bytes([index]) * MIB


def test_a_write_is_fsynced_by_default(tmp_path: Path, calls: FsyncCalls) -> None:
    """By default the stored file and its directory are fsynced before write returns."""
    store = LocalStore(tmp_path)
    assert store.fsync is True

    store.write("job/a.bin", iter([b"ab", b"cd"]))

    assert calls.files == [(tmp_path / "job" / "a.bin").stat().st_ino]
    assert calls.directories == [(tmp_path / "job").stat().st_ino]


def test_a_store_without_fsync_never_fsyncs_a_write(tmp_path: Path, calls: FsyncCalls) -> None:
    """fsync=False: a large streamed write stores the same bytes and digest with no fsync of
    the file or directory, and leaves no temp file."""
    store = LocalStore(tmp_path, fsync=False)
    expected = Digest()
    for chunk in big_chunks():
        expected.update(chunk)

    stored = store.write("job/a.bin", big_chunks())

    assert (calls.files, calls.directories) == ([], [])
    assert (stored.bytes, stored.hash) == (expected.bytes, expected.hash)
    assert (tmp_path / "job" / "a.bin").stat().st_size == expected.bytes
    assert not [p for p in (tmp_path / "job").iterdir() if p.name.startswith(TEMP_PREFIX)]


@pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="no posix_fadvise here")
@pytest.mark.parametrize("fsync", [True, False])
def test_a_large_write_starts_writeback_while_it_copies(
    tmp_path: Path, calls: FsyncCalls, fsync: bool
) -> None:
    """A large write starts writeback every WRITE_BEHIND bytes, with or without the final
    fsync: it keeps the copy clear of the kernel's throttling of heavy page-cache writers."""
    LocalStore(tmp_path, fsync=fsync).write("job/a.bin", big_chunks())
    assert calls.advice == 2 and len(calls.files) == (1 if fsync else 0)


def test_move_in_without_fsync_does_not_fsync(tmp_path: Path, calls: FsyncCalls) -> None:
    """move_in renames a finished file in: fsynced by default, not with fsync=False."""
    for fsync, synced in ((True, 1), (False, 0)):
        spool = tmp_path / f"spool-{fsync}"
        spool.write_bytes(b"blob")
        calls.files.clear()
        assert LocalStore(tmp_path / "store", fsync=fsync).move_in(f"b/{fsync}", spool)
        assert len(calls.files) == synced
        assert (tmp_path / "store" / "b" / str(fsync)).read_bytes() == b"blob"


def test_open_store_takes_fsync_from_the_caller_or_the_url(tmp_path: Path) -> None:
    """open_store(fsync=...) sets it for file:// stores; ?fsync=0|1 on the URL overrides it."""
    cases = {
        (tmp_path.as_uri(), True): True,
        (tmp_path.as_uri(), False): False,
        (str(tmp_path), False): False,
        (tmp_path.as_uri() + "?fsync=0", True): False,
        (tmp_path.as_uri() + "?fsync=1&digest=none", False): True,
    }
    for (url, fsync), expected in cases.items():
        store = open_store(url, fsync=fsync)
        assert isinstance(store, LocalStore) and store.fsync is expected, url


def test_a_bad_fsync_option_is_refused_by_name(tmp_path: Path) -> None:
    """?fsync= other than 1/0 (true/false, yes/no, on/off) is a ValueError naming the value."""
    with pytest.raises(ValueError, match="fsync must be 1 or 0 .* not 'sometimes'"):
        open_store(tmp_path.as_uri() + "?fsync=sometimes")
    with pytest.raises(ValueError, match="takes digest and fsync"):
        open_store(tmp_path.as_uri() + "?sync=0")


def test_the_setting_comes_from_comfyfarm_storage_fsync() -> None:
    """COMFYFARM_STORAGE_FSYNC: 1 by default, 0/false/no/off turns it off, junk is refused."""
    assert Settings.from_env({}).storage_fsync is True
    for word in ("0", "false", "no", "off"):
        assert Settings.from_env({"COMFYFARM_STORAGE_FSYNC": word}).storage_fsync is False
    with pytest.raises(SettingsError, match="COMFYFARM_STORAGE_FSYNC"):
        Settings.from_env({"COMFYFARM_STORAGE_FSYNC": "maybe"})


def test_a_worker_opens_its_store_as_the_setting_says(tmp_path: Path) -> None:
    """The worker's output store fsyncs unless COMFYFARM_STORAGE_FSYNC=0."""
    for fsync in (True, False):
        settings = Settings(storage_url=tmp_path.as_uri(), storage_fsync=fsync)
        deps = WorkerDeps(
            settings,
            comfy_url="http://127.0.0.1:9",
            worker_name="w",
            client_id="c",
            open_redis=lambda s: redis.Redis(port=9),  # never contacted here
        )
        store = deps.open().store
        assert isinstance(store, LocalStore) and store.fsync is fsync
