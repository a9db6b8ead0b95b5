"""Prometheus metrics summed over several processes: ``prometheus_client``'s multiprocess mode.

A worker's prefork pool and ``comfyfarm gateway --processes N`` both run one service in several
processes, and a scrape must see the service, not whichever process answered. Every process
writes its samples to memory-mapped files in one directory (``PROMETHEUS_MULTIPROC_DIR``, which
``prometheus_client`` reads when it is first imported: the directory must be in the environment
before a process imports it), and a scrape sums those files.

The directory is private to one worker or one gateway supervisor: created 0700 and empty, removed
when it stops. Its owner holds an ``flock`` on a file in it for as long as it lives, so a
directory whose lock is free belongs to a process that died without removing it (SIGKILL, a
crash): creating a directory first removes such leftovers of this user.

When a process ends, ``mark_dead`` drops its live gauges (``livesum``, ``liveall``...). Its
counters and histograms stay in its files and keep counting in the sum, so a total never goes
backwards when a process dies or is replaced (``prometheus_client`` documents this; the files of
dead processes are only removed with the directory).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
PREFIX = "comfyfarm-metrics-"
OWNER_LOCK = "owner.lock"  # not *.db: prometheus_client reads only those
_held: dict[str, int] = {}  # directory -> the open, locked owner file (released by remove)


def create_multiprocess_dir(parent: str | None = None) -> str:
    """A new, empty sample directory only this user can read (``mkdtemp``: mode 0700) in
    ``parent`` (the temporary directory), locked by this process until
    ``remove_multiprocess_dir``; leftovers of dead owners there are removed first."""
    parent = parent or tempfile.gettempdir()
    remove_abandoned_dirs(Path(parent))
    directory = tempfile.mkdtemp(prefix=PREFIX, dir=parent)
    # Locked before it gets its name: a sweep never sees the lock file free while we live.
    unnamed = os.path.join(directory, ".owner.lock.new")
    fd = os.open(unnamed, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.rename(unnamed, os.path.join(directory, OWNER_LOCK))
    _held[directory] = fd
    return directory


def remove_abandoned_dirs(parent: Path) -> list[Path]:
    """Remove this user's sample directories in ``parent`` whose owner lock is free (the owner
    is gone); directories without a lock file, or another user's, are left alone."""
    removed = []
    for directory in parent.glob(PREFIX + "*"):
        with contextlib.suppress(OSError):
            if directory.is_symlink() or directory.stat().st_uid != os.getuid():
                continue
            fd = os.open(directory / OWNER_LOCK, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError: owner alive
                shutil.rmtree(directory, ignore_errors=True)
                removed.append(directory)
            finally:
                os.close(fd)
    return removed


def prepare_multiprocess_dir() -> str:
    """Create a sample directory and export it to this process and the children it forks.
    Call before ``prometheus_client`` is imported."""
    directory = create_multiprocess_dir()
    os.environ[MULTIPROC_ENV] = directory
    return directory


def remove_multiprocess_dir(directory: str) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    fd = _held.pop(directory, None)
    if fd is not None:
        os.close(fd)


def aggregate_registry(directory: str) -> Any:
    """A registry whose only collector sums every process's files in ``directory``."""
    from prometheus_client import CollectorRegistry, multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return registry


def mark_dead(pid: int, directory: str) -> None:
    """Process ``pid`` has ended: its live gauges leave the sum (its counters stay)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, path=directory)  # type: ignore[no-untyped-call]
