"""Memory figures from /proc: process trees and the peak RSS growth of this process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from comfyfarm_bench.memory import PeakRssGrowth, rss_kib, tree_memory, with_descendants

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")


def test_descendants_include_children_of_the_root() -> None:
    """A child process is found below its parent, and memory is summed over both."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in with_descendants([os.getpid()])
        both = tree_memory([os.getpid()])
        assert both.processes >= 2 and both.rss_mb > 0
    finally:
        child.kill()
        child.wait()


def test_peak_growth_sees_a_short_lived_allocation() -> None:
    """Memory allocated and freed inside the block still counts as growth."""
    with PeakRssGrowth() as peak:
        block = bytearray(64 << 20)
        block[::4096] = b"x" * len(block[::4096])  # touch every page
        del block
    assert peak.growth_mb >= 48


def test_rss_of_a_missing_process_is_none() -> None:
    """A process that is gone has no RSS (None, not an error)."""
    assert rss_kib(2**22 + 12345) is None
