"""Large outputs stream through the stores without being held in memory."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import blake3
import pytest

from comfyfarm.storage import LocalStore, OutputStore, open_store
from comfyfarm.storage.s3 import MIN_PART_SIZE

TOTAL = 50 * 1024 * 1024
CHUNK = 1024 * 1024


def generated(total: int = TOTAL, chunk: int = CHUNK) -> Iterator[bytes]:
    """``total`` bytes in ``chunk``-sized pieces, made on the fly (like a download)."""
    block = bytes(range(256)) * (chunk // 256)
    for _ in range(total // chunk):
        yield block


def expected_digest() -> str:
    digest = blake3.blake3()
    for piece in generated():
        digest.update(piece)
    return "blake3:" + digest.hexdigest()


def peak_during_write(store: OutputStore, key: str) -> tuple[int, int, str]:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        stored = store.write(key, generated())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, stored.bytes, stored.hash


def test_local_write_of_50mb_holds_about_one_chunk(tmp_path: Path) -> None:
    """A 50 MB file write peaks at a few MB of Python memory, and hashes while streaming."""
    store = LocalStore(tmp_path)
    peak, size, sha = peak_during_write(store, "job/big.bin")
    assert size == TOTAL and (tmp_path / "job/big.bin").stat().st_size == TOTAL
    assert sha == expected_digest()
    assert peak < 3 * CHUNK, f"peak {peak / 1e6:.1f} MB"


@pytest.mark.slow
def test_s3_write_of_50mb_holds_about_one_part(s3_url: str) -> None:
    """A 50 MB multipart upload holds one 5 MiB part (+ a chunk) at a time, never the object."""
    store = open_store(s3_url)
    store.part_size = MIN_PART_SIZE  # type: ignore[attr-defined]
    peak, size, sha = peak_during_write(store, "job/big.bin")
    assert size == TOTAL and sha == expected_digest()
    assert peak < 2 * MIN_PART_SIZE, f"peak {peak / 1e6:.1f} MB"
    with store.open_read("job/big.bin") as stream:
        digest, total = blake3.blake3(), 0
        while piece := stream.read(CHUNK):
            digest.update(piece)
            total += len(piece)
    assert (total, "blake3:" + digest.hexdigest()) == (TOTAL, sha)
