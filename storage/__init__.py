"""Output storage chosen by URL: ``file://``, ``s3://``, ``memory://``.

``open_store(url)`` returns an ``OutputStore`` (see ``base``): streamed, atomic, idempotent
writes, each recorded with its digest (``digests``: ``blake3:<hex>`` by default); keys are
checked relative POSIX paths (``keys``). ``blobs`` keeps content-addressed uploads and the asset
records over them (``asset_records``) in any store. Errors form one tree rooted at
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
from comfyfarm.storage.digests import DEFAULT_DIGEST, DIGEST_ALGORITHMS, check_algorithm
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


def open_store(
    url: str,
    *,
    environ: Mapping[str, str] | None = None,
    digest: str = DEFAULT_DIGEST,
    fsync: bool = True,
) -> OutputStore:
    """The store for ``url``, recording each object's ``digest`` (``blake3``, ``sha256`` or
    ``none``; ``COMFYFARM_OUTPUT_DIGEST``):

    - ``file:///abs/dir`` or a plain path (relative paths are taken from the current directory);
      ``file:///abs/dir?digest=sha256|blake3|none`` overrides ``digest`` for this store (``none``
      keeps no digest: the hash is the slowest step of copying a large output). ``fsync``
      (``COMFYFARM_STORAGE_FSYNC``; ``?fsync=0|1`` overrides it) makes each write durable before
      it returns; without it a host crash can lose outputs a result says are stored, for
      storage whose durability is handled elsewhere. Other stores ignore ``fsync``: an S3 PUT
      is durable when it returns, ``memory://`` never is.
    - ``s3://bucket[/prefix][?endpoint_url=...&region=...&addressing_style=path]`` (needs boto3;
      other settings from ``COMFYFARM_S3_*`` / ``AWS_*`` in ``environ``, default ``os.environ``)
    - ``memory://name``

    Raises ValueError for any other URL or digest. Nothing is contacted until the first operation.
    """
    check_algorithm(digest)
    if "://" not in url:
        return LocalStore(os.path.expanduser(url), digest=digest, fsync=fsync)
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"file:// URLs must be local (file:///path), not {url!r}")
        options = _file_options(url, parts.query)
        return LocalStore(
            unquote(parts.path),
            digest=_file_digest(url, options, digest),
            fsync=_file_fsync(url, options, fsync),
        )
    if parts.scheme == "memory":
        return MemoryStore(parts.netloc or "default", digest=digest)
    if parts.scheme == "s3":
        from comfyfarm.storage.s3 import S3Store  # boto3 is only needed for s3://

        return S3Store.from_url(url, environ=environ, digest=digest)
    raise ValueError(f"unsupported storage URL {url!r}: use file://, s3:// or memory://")


def _file_options(url: str, query: str) -> dict[str, list[str]]:
    """The query options of a ``file://`` URL; any but ``digest`` and ``fsync`` is refused."""
    options = parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(options) - {"digest", "fsync"})
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)} in {url!r}: file:// takes digest and fsync"
        )
    return options


def _file_digest(url: str, options: dict[str, list[str]], default: str) -> str:
    """The digest of a ``file://`` store: ``?digest=blake3|sha256|none``, else ``default``;
    any other value is refused, naming it."""
    value = options.get("digest", [default])[-1]
    if value not in DIGEST_ALGORITHMS:
        raise ValueError(
            f"digest must be one of {', '.join(DIGEST_ALGORITHMS)} in {url!r}, not {value!r}"
        )
    return value


def _file_fsync(url: str, options: dict[str, list[str]], default: bool) -> bool:
    """Whether a ``file://`` store fsyncs: ``?fsync=1|0`` (also true/false, yes/no, on/off),
    else ``default``; any other value is refused, naming it."""
    if "fsync" not in options:
        return default
    value = options["fsync"][-1].lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"fsync must be 1 or 0 in {url!r}, not {options['fsync'][-1]!r}")
