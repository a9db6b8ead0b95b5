"""Where the time of ``comfyfarm bench outputs`` goes: each step of the farm's output copy timed
on its own, so the figures of the whole copy can be read against them.

- ``download``: ``ComfyClient.iter_output`` from the simulator's ``/view``, bytes dropped.
- ``blake3``: the digest of the same number of bytes, in memory, on one core.
- ``page-cache write``: those bytes written from memory into a new file (1 MiB writes).
- ``fsync after it``: the fsync that makes that file durable: all of its writeback.
- ``write-behind write``: the same write through the store's ``_WriteBehind`` (writeback started
  every ``WRITE_BEHIND`` bytes while it writes), and ``its fsync``: what is left at the end.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import blake3

from comfyfarm.comfy.client import ComfyClient
from comfyfarm.comfy.outputs import OutputFile
from comfyfarm.storage.local import _WriteBehind

MIB = 1 << 20
PHASES = (
    "download",
    "blake3",
    "page-cache write",
    "fsync after it",
    "write-behind write",
    "its fsync",
)


def measure_phases(
    client: ComfyClient, output: OutputFile, directory: Path, size: int
) -> dict[str, float]:
    """Seconds each of ``PHASES`` took once for ``size`` bytes; files go to ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    block = os.urandom(MIB)
    seconds: dict[str, float] = {}
    seconds["download"] = _timed(lambda: _drain(client.iter_output(output)))

    def digest() -> None:
        hasher = blake3.blake3()
        for chunk in _chunks(block, size):
            hasher.update(chunk)

    seconds["blake3"] = _timed(digest)
    for write, sync, behind in (
        ("page-cache write", "fsync after it", False),
        ("write-behind write", "its fsync", True),
    ):
        path = directory / "phase.bin"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            sink = _WriteBehind(fd) if behind else _PlainWrites(fd)
            seconds[write] = _timed(partial(_write, sink, block, size))
            seconds[sync] = _timed(partial(os.fsync, fd))
        finally:
            os.close(fd)
            path.unlink()
    return seconds


class _PlainWrites:
    """Writes to ``fd`` and nothing else: the page cache holds it all until an fsync."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            view = view[os.write(self.fd, view) :]


def _write(sink: _WriteBehind | _PlainWrites, block: bytes, size: int) -> None:
    for chunk in _chunks(block, size):
        sink.write(chunk)


def _timed(step: Callable[[], object]) -> float:
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


def _drain(chunks: Iterator[bytes]) -> None:
    for _ in chunks:
        pass


def _chunks(block: bytes, size: int) -> Iterator[bytes]:
    """``size`` bytes as ``block`` repeated (the last one cut short)."""
    left = size
    while left > 0:
        yield block[: min(left, len(block))]
        left -= len(block)
