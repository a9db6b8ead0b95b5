"""Asset records: small JSON objects naming a blob, one per asset, kept in the output store.

An asset (Comfy API v2) is a UUID-identified record over an immutable, content-addressed blob.
Keeping the records as objects beside the blobs (``assets/<tenant>/<id>.json``) rather than in a
gateway's memory keeps every gateway stateless: any of them can answer for any asset, and the
records live exactly as long as the storage does.

A record read back from the store is checked like any input (size, JSON, fields, tenant), since
the store may be shared and edited by hand; a record that fails the check reads as absent.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from comfyfarm.storage.base import UnsafeKey
from comfyfarm.storage.digests import is_hash
from comfyfarm.storage.keys import check_key

RECORD_VERSION = 1
#: Largest record read back; a record is a few hundred bytes plus its metadata.
MAX_RECORD_BYTES = 64 * 1024
MAX_METADATA_BYTES = 16 * 1024
MAX_NAME_LENGTH = 1024
MAX_MIME_LENGTH = 255
ASSETS_DIR = "assets"
# Letters, digits, '_', '-', '.', starting with a letter or digit: a single safe path part.
_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def check_tenant(tenant: str) -> str:
    """``tenant`` if it is 1-64 of ``A-Z a-z 0-9 _ - .`` starting with a letter or digit;
    ``UnsafeKey`` otherwise (a tenant names a folder of the store)."""
    if not isinstance(tenant, str) or not _TENANT.fullmatch(tenant):
        raise UnsafeKey(
            key=str(tenant)[:80],
            reason="a tenant must be 1-64 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit",
        )
    return tenant


def is_asset_id(text: object) -> bool:
    """Whether ``text`` is an asset id: a UUID in its canonical lowercase form."""
    if not isinstance(text, str) or len(text) != 36:
        return False
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def new_asset_id() -> str:
    """A fresh asset id (a random UUID, as the v2 spec's Asset ids are)."""
    return str(uuid.uuid4())


def record_key(tenant: str, asset_id: str) -> str:
    """``assets/<tenant>/<id>.json``; raises ``UnsafeKey`` for a bad tenant or id."""
    if not is_asset_id(asset_id):
        raise UnsafeKey(key=str(asset_id)[:80], reason="an asset id is a lowercase UUID")
    return check_key(f"{ASSETS_DIR}/{check_tenant(tenant)}/{asset_id}.json")


class RecordError(ValueError):
    """Raised when an asset record (given, or read back) has a bad field; ``field`` names it."""

    def __init__(self, field_name: str, reason: str) -> None:
        self.field = field_name
        self.reason = reason
        super().__init__(f"asset record field {field_name!r}: {reason}")


@dataclass(frozen=True, kw_only=True)
class AssetRecord:
    """One asset of ``tenant``: the blob ``digest`` (``blake3:<hex>``; empty when unknown) of
    ``size`` bytes stored under the store ``key``, with its file ``name`` (the spec's
    ``file_path``), ``mime_type``, JSON ``metadata`` (tags, job id, …) and ``created_at``
    (seconds since the epoch)."""

    id: str
    tenant: str
    digest: str
    size: int
    name: str
    mime_type: str
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: float
    key: str

    def __post_init__(self) -> None:
        if not is_asset_id(self.id):
            raise RecordError("id", "must be a lowercase UUID")
        for name, check in (("tenant", check_tenant), ("key", check_key)):
            try:
                check(getattr(self, name))
            except UnsafeKey as exc:
                raise RecordError(name, exc.reason) from None
        if self.digest and not is_hash(self.digest):
            raise RecordError("digest", "must be blake3:<64 hex>, sha256:<64 hex> or empty")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0:
            raise RecordError("size", "must be a non-negative integer")
        _check_text("name", self.name, MAX_NAME_LENGTH)
        _check_text("mime_type", self.mime_type, MAX_MIME_LENGTH)
        if not isinstance(self.metadata, dict) or not all(
            isinstance(k, str) for k in self.metadata
        ):
            raise RecordError("metadata", "must be an object with string keys")
        try:
            encoded = json.dumps(self.metadata, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise RecordError("metadata", f"must be plain JSON ({exc})") from None
        if len(encoded.encode()) > MAX_METADATA_BYTES:
            raise RecordError("metadata", f"over {MAX_METADATA_BYTES} bytes as JSON")
        created = self.created_at
        if isinstance(created, bool) or not isinstance(created, int | float):
            raise RecordError("created_at", "must be a number of seconds")
        if not math.isfinite(created) or created < 0:
            raise RecordError("created_at", "must be a finite, non-negative number")

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": RECORD_VERSION,
            "id": self.id,
            "tenant": self.tenant,
            "digest": self.digest,
            "size": self.size,
            "name": self.name,
            "mime_type": self.mime_type,
            "metadata": self.metadata,
            "created_at": self.created_at,
            "key": self.key,
        }

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False).encode()

    @classmethod
    def from_dict(cls, data: object) -> AssetRecord:
        """Build and check; raises ``RecordError`` naming the first bad field."""
        if not isinstance(data, dict):
            raise RecordError("", "must be a JSON object")
        if data.get("version", RECORD_VERSION) != RECORD_VERSION:
            raise RecordError("version", f"unsupported (this code reads {RECORD_VERSION})")
        values: dict[str, Any] = {}
        for name in ("id", "tenant", "digest", "size", "name", "mime_type", "created_at", "key"):
            if name not in data:
                raise RecordError(name, "missing")
            values[name] = data[name]
        return cls(metadata=data.get("metadata") or {}, **values)

    @classmethod
    def from_json(cls, raw: bytes) -> AssetRecord:
        """Parse a record read from the store (at most ``MAX_RECORD_BYTES``)."""
        if len(raw) > MAX_RECORD_BYTES:
            raise RecordError("", f"over {MAX_RECORD_BYTES} bytes")
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise RecordError("", f"not JSON ({exc})") from None
        return cls.from_dict(data)


def _check_text(name: str, value: object, max_len: int) -> None:
    if not isinstance(value, str):
        raise RecordError(name, "must be a string")
    if len(value) > max_len:
        raise RecordError(name, f"longer than {max_len} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise RecordError(name, "control characters are not allowed")
