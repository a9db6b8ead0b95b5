"""A worker's cache of inputs fetched by URL: the same bytes are not fetched twice.

Blobs are stored by the BLAKE3 digest of their content (``blobs/<hex>``), so two URLs with the
same bytes share one file; an index entry per URL (``urls/<blake3 of the URL>.json``) remembers
the digest and the validators the server gave (``ETag``, ``Last-Modified``). A URL seen before
is asked again conditionally: ``304 Not Modified`` means the cached bytes are used and nothing
is transferred. A server that gives no validators is fetched again (its URL may change content),
but its bytes are still stored once.

Writes go to a temp file renamed into place, so the pool's processes share the cache safely. The
cache is bounded (``COMFYFARM_INPUT_CACHE_MB``): after a write, least recently used blobs go.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from comfyfarm.worker.fetch import FetchError, FetchPolicy, fetch


def blake3_hex(data: bytes) -> str:
    from blake3 import blake3

    return str(blake3(data).hexdigest())


class InputCache:
    """Fetched inputs by content digest, under ``root``, at most ``max_bytes`` in all."""

    def __init__(self, root: Path, *, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        (root / "blobs").mkdir(parents=True, exist_ok=True)
        (root / "urls").mkdir(parents=True, exist_ok=True)
        self.transfers = 0  # answers with a body (not 304): for tests and metrics

    def get(self, url: str, policy: FetchPolicy) -> bytes:
        """The bytes behind ``url``, from the cache when the server says they did not change."""
        index_path = self.root / "urls" / f"{blake3_hex(url.encode())}.json"
        entry = self._read_index(index_path)
        blob = self.root / "blobs" / entry["digest"] if entry else None
        headers = {}
        if entry and blob is not None and blob.exists():
            if entry.get("etag"):
                headers["If-None-Match"] = entry["etag"]
            if entry.get("last_modified"):
                headers["If-Modified-Since"] = entry["last_modified"]
        body = fetch(url, policy, headers=headers or None)
        if body.status == 304 and blob is not None and headers:
            body.close()
            os.utime(blob)  # recently used
            cached: bytes = blob.read_bytes()
            return cached
        body.raise_for_status()
        data = b"".join(body.chunks())
        self.transfers += 1
        digest = blake3_hex(data)
        self._write_atomic(self.root / "blobs" / digest, data)
        index = {"digest": digest, "etag": body.headers.get("ETag", ""),
                 "last_modified": body.headers.get("Last-Modified", "")}  # fmt: skip
        self._write_atomic(index_path, json.dumps(index).encode())
        self._evict()
        return data

    def _read_index(self, path: Path) -> dict[str, Any] | None:
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        digest = entry.get("digest") if isinstance(entry, dict) else None
        if not isinstance(digest, str) or len(digest) != 64 or not digest.isalnum():
            return None
        return dict(entry)

    def _write_atomic(self, path: Path, data: bytes) -> None:
        handle, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise

    def _evict(self) -> None:
        blobs = []
        for path in (self.root / "blobs").iterdir():
            try:
                stat = path.stat()
            except FileNotFoundError:  # another process evicted it
                continue
            blobs.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in blobs)
        for _, size, path in sorted(blobs):
            if total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size


__all__ = ["FetchError", "InputCache", "blake3_hex"]
