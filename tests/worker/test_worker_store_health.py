"""The worker's output-store health: a probe write, and the sweep of stale temp files."""

from __future__ import annotations

import os
from pathlib import Path

from comfyfarm.storage import LocalStore
from comfyfarm.storage.keys import TEMP_PREFIX
from comfyfarm.worker.store_health import StoreHealth


def test_a_store_that_cannot_be_written_is_unhealthy_with_its_reason(tmp_path: Path) -> None:
    """A store whose root lies under a regular file fails the probe and says why."""
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    health = StoreHealth(LocalStore(blocker / "out"), "w1")

    assert health.check() is False
    assert "cannot create the store root" in health.reason


def test_a_writable_store_is_healthy_and_the_probe_leaves_no_object(tmp_path: Path) -> None:
    """The probe writes and removes its object; the store is healthy."""
    health = StoreHealth(LocalStore(tmp_path), "w1")

    assert health.check() is True and health.reason == "ok"
    assert list((tmp_path / ".comfyfarm-probe").iterdir()) == []


def test_the_first_healthy_check_sweeps_stale_temp_files(tmp_path: Path) -> None:
    """A temp file a killed worker left an hour ago is removed when the worker starts."""
    stale = tmp_path / f"{TEMP_PREFIX}killed-mid-copy"
    stale.write_bytes(b"x" * 1000)
    hour_ago = stale.stat().st_mtime - 3600
    os.utime(stale, (hour_ago, hour_ago))

    StoreHealth(LocalStore(tmp_path), "w1", temp_max_age=600).check()

    assert not stale.exists()


def test_a_store_that_comes_back_is_probed_again_at_once(tmp_path: Path) -> None:
    """While unhealthy every check probes (no interval): a repaired store is seen at once."""
    root = tmp_path / "mount"
    root.write_text("not mounted yet")
    health = StoreHealth(LocalStore(root), "w1", probe_interval=3600)
    assert health.check() is False

    root.unlink()
    assert health.check() is True
