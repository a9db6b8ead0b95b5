"""Prometheus metrics summed over several processes: ``prometheus_client``'s multiprocess mode.

A worker's prefork pool and ``comfyfarm gateway --processes N`` both run one service in several
processes, and a scrape must see the service, not whichever process answered. Every process
writes its samples to memory-mapped files in one directory (``PROMETHEUS_MULTIPROC_DIR``, which
``prometheus_client`` reads when it is first imported: the directory must be in the environment
before a process imports it), and a scrape sums those files.

The directory is private to one worker or one gateway supervisor: created 0700 and empty, removed
when it stops. When a process ends, ``mark_dead`` drops its live gauges (``livesum``,
``liveall``…). Its counters and histograms stay in its files and keep counting in the sum, so a
total never goes backwards when a process dies or is replaced (``prometheus_client`` documents
this; the files of dead processes are only removed with the directory).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def create_multiprocess_dir() -> str:
    """A new, empty sample directory only this user can read (``mkdtemp``: mode 0700)."""
    return tempfile.mkdtemp(prefix="comfyfarm-metrics-")


def prepare_multiprocess_dir() -> str:
    """Create a sample directory and export it to this process and the children it forks.
    Call before ``prometheus_client`` is imported."""
    directory = create_multiprocess_dir()
    os.environ[MULTIPROC_ENV] = directory
    return directory


def remove_multiprocess_dir(directory: str) -> None:
    shutil.rmtree(directory, ignore_errors=True)


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
