"""The shared Prometheus sample directory: private, locked by its owner while it lives, and
removed by the next owner once its own owner died without removing it."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from comfyfarm.tasks.multiprocess_metrics import (
    OWNER_LOCK,
    PREFIX,
    create_multiprocess_dir,
    remove_abandoned_dirs,
    remove_multiprocess_dir,
)

# A process that creates a directory in argv[1] and dies without removing it (as SIGKILL would).
ABANDON = (
    "import os, sys\n"
    "from comfyfarm.tasks.multiprocess_metrics import create_multiprocess_dir\n"
    "print(create_multiprocess_dir(sys.argv[1]), flush=True)\n"
    "os._exit(0)\n"
)


def lock_is_free(directory: Path) -> bool:
    fd = os.open(directory / OWNER_LOCK, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def abandoned_dir(parent: Path) -> Path:
    done = subprocess.run(
        [sys.executable, "-c", ABANDON, str(parent)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return Path(done.stdout.strip())


def test_a_new_directory_is_private_empty_and_locked(tmp_path: Path) -> None:
    """0700, nothing in it but the owner's lock file, which is held until it is removed."""
    directory = Path(create_multiprocess_dir(str(tmp_path)))

    mode = directory.stat().st_mode & 0o777
    entries = [entry.name for entry in directory.iterdir()]
    held = not lock_is_free(directory)
    remove_multiprocess_dir(str(directory))

    assert (mode, entries, held) == (0o700, [OWNER_LOCK], True)
    assert not directory.exists()


def test_a_dead_owners_directory_is_removed_by_the_next_one(tmp_path: Path) -> None:
    """A directory whose owner died is removed when a new one is created; a live one stays."""
    abandoned = abandoned_dir(tmp_path)
    left_over = abandoned.is_dir()

    live = Path(create_multiprocess_dir(str(tmp_path)))

    try:
        assert left_over and not abandoned.exists()
        assert remove_abandoned_dirs(tmp_path) == []
        assert live.is_dir()
    finally:
        remove_multiprocess_dir(str(live))


@pytest.mark.parametrize("kind", ["without a lock file", "not ours by name"])
def test_directories_that_are_not_a_dead_owners_are_left_alone(tmp_path: Path, kind: str) -> None:
    """Only directories named like ours with a free owner lock are removed."""
    name = PREFIX + "old" if kind == "without a lock file" else "other-metrics-x"
    other = tmp_path / name
    other.mkdir()
    if kind == "not ours by name":
        (other / OWNER_LOCK).touch()

    assert remove_abandoned_dirs(tmp_path) == []
    assert other.is_dir()
