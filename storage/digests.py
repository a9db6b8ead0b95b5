"""Content digests of stored objects, written ``<algorithm>:<hex>`` (``blake3:9f8a…``).

BLAKE3 is the default: it is what Comfy API v2 and the rest of the ecosystem address content by,
and it is 2-4 × faster than SHA-256 on one core (both release the GIL on large buffers, so the
file store hashes in a helper thread while it writes). SHA-256 stays available for users whose
tooling expects it; ``none`` keeps no digest at all (the record's hash is then empty).

Chosen per store: ``COMFYFARM_OUTPUT_DIGEST`` (``open_store(url, digest=...)``), or a
``?digest=`` query on a ``file://`` URL, which wins.
"""

from __future__ import annotations

import hashlib
import re
from typing import Protocol

import blake3

BLAKE3 = "blake3"
SHA256 = "sha256"
NONE = "none"
#: Every value of COMFYFARM_OUTPUT_DIGEST / ``?digest=``.
DIGEST_ALGORITHMS: tuple[str, ...] = (BLAKE3, SHA256, NONE)
DEFAULT_DIGEST = BLAKE3
# A 32-byte digest of either algorithm, lowercase hex, with its algorithm named.
_HASH = re.compile(r"(blake3|sha256):[0-9a-f]{64}")


class _Hasher(Protocol):
    def update(self, data: bytes, /) -> object: ...

    def hexdigest(self) -> str: ...


def check_algorithm(algorithm: str) -> str:
    """``algorithm`` if it is one of ``DIGEST_ALGORITHMS``; ValueError naming the choices."""
    if algorithm not in DIGEST_ALGORITHMS:
        raise ValueError(f"digest must be one of {', '.join(DIGEST_ALGORITHMS)}, not {algorithm!r}")
    return algorithm


def is_hash(text: object) -> bool:
    """Whether ``text`` is a well-formed ``blake3:<64 hex>`` or ``sha256:<64 hex>``."""
    return isinstance(text, str) and _HASH.fullmatch(text) is not None


def is_blake3(text: object) -> bool:
    """Whether ``text`` is a well-formed ``blake3:<64 lowercase hex>``."""
    return is_hash(text) and str(text).startswith(BLAKE3 + ":")


def new_hasher(algorithm: str) -> _Hasher | None:
    """A fresh hash object for ``algorithm`` (None for ``none``)."""
    if check_algorithm(algorithm) == BLAKE3:
        return blake3.blake3()
    if algorithm == SHA256:
        return hashlib.sha256()
    return None


class Digest:
    """Counts bytes and hashes them as chunks stream past; with ``none`` (a store configured
    without digests) it only counts, and ``hash`` is empty."""

    def __init__(self, algorithm: str = DEFAULT_DIGEST) -> None:
        self.algorithm = check_algorithm(algorithm)
        self._hash = new_hasher(algorithm)
        self.bytes = 0

    @property
    def enabled(self) -> bool:
        return self._hash is not None

    def update(self, chunk: bytes) -> None:
        if not isinstance(chunk, bytes | bytearray | memoryview):
            raise TypeError(f"chunks must be bytes, not {type(chunk).__name__}")
        if self._hash is not None:
            self._hash.update(chunk)
        self.bytes += len(chunk)

    @property
    def hash(self) -> str:
        """``<algorithm>:<hex>`` of everything so far, or ``""`` without a digest."""
        return f"{self.algorithm}:{self._hash.hexdigest()}" if self._hash is not None else ""
