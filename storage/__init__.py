"""Output storage chosen by URL: ``file://``, ``s3://``, ``memory://``.

``open_store(url)`` returns an ``OutputStore`` (see ``base``): streamed, atomic, idempotent
writes; keys are checked relative POSIX paths (``keys``). Errors form one tree rooted at
``StorageError``; ``StorageUnavailable`` is the retryable branch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import parse_qs, unquote, urlsplit

from comfyfarm.storage.base import (
    ObjectNotFound,
    OutputStore,
    StorageError,
    StorageUnavailable,
    StoredObject,
    UnsafeKey,
)
from comfyfarm.storage.local import LocalStore
from comfyfarm.storage.memory import MemoryStore

__all__ = [
    "LocalStore",
    "MemoryStore",
    "ObjectNotFound",
    "OutputStore",
    "StorageError",
    "StorageUnavailable",
    "StoredObject",
    "UnsafeKey",
    "open_store",
]


def open_store(url: str, *, environ: Mapping[str, str] | None = None) -> OutputStore:
    """The store for ``url``:

    - ``file:///abs/dir`` or a plain path (relative paths are taken from the current directory);
      ``file:///abs/dir?digest=none`` keeps no SHA-256 of outputs (their ``sha256`` is empty):
      the hash is the slowest step of copying a large output (~1.4 GB/s on one core)
    - ``s3://bucket[/prefix][?endpoint_url=...&region=...&addressing_style=path]`` (needs boto3;
      other settings from ``COMFYFARM_S3_*`` / ``AWS_*`` in ``environ``, default ``os.environ``)
    - ``memory://name``

    Raises ValueError for any other URL. Nothing is contacted until the first operation.
    """
    if "://" not in url:
        return LocalStore(os.path.expanduser(url))
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"file:// URLs must be local (file:///path), not {url!r}")
        return LocalStore(unquote(parts.path), digest=_file_digest(url, parts.query))
    if parts.scheme == "memory":
        return MemoryStore(parts.netloc or "default")
    if parts.scheme == "s3":
        from comfyfarm.storage.s3 import S3Store  # boto3 is only needed for s3://

        return S3Store.from_url(url, environ=environ)
    raise ValueError(f"unsupported storage URL {url!r}: use file://, s3:// or memory://")


def _file_digest(url: str, query: str) -> bool:
    """Whether a ``file://`` store keeps SHA-256 digests: ``?digest=sha256`` (default) or
    ``?digest=none``; anything else is refused, naming it."""
    options = parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(options) - {"digest"})
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)} in {url!r}: file:// takes digest")
    value = options.get("digest", ["sha256"])[-1]
    if value not in ("sha256", "none"):
        raise ValueError(f"digest must be sha256 or none in {url!r}, not {value!r}")
    return value == "sha256"
