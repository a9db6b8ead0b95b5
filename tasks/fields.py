"""Field checks shared by the payload models: each raises the given PayloadError subclass with the
dotted path of the offending field, so a rejected job says exactly what to fix."""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NoReturn
from urllib.parse import urlsplit

from comfyfarm.tasks.errors import PayloadError

try:  # the gateway extra installs it; without it every size is measured by the json module
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the extras installed
    _orjson = None  # type: ignore[assignment]

ErrorType = type[PayloadError]

_LABEL_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-/]{0,63}")


def fail(error: ErrorType, field: str, reason: str) -> NoReturn:
    raise error(field=field, reason=reason)


@contextmanager
def within(path: str) -> Iterator[None]:
    """Re-raise a PayloadError from a nested model with ``path`` in front of its field."""
    try:
        yield
    except PayloadError as exc:
        field = f"{path}.{exc.field}" if exc.field else path
        raise type(exc)(field=field, reason=exc.reason) from None


def mapping(error: ErrorType, field: str, value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        fail(error, field, f"must be an object, not {type(value).__name__}")
    return value


def required(error: ErrorType, data: Mapping[str, Any], key: str) -> Any:
    if key not in data:
        fail(error, key, "missing")
    return data[key]


def text(error: ErrorType, field: str, value: object, *, max_len: int, empty: bool = False) -> str:
    if not isinstance(value, str):
        fail(error, field, f"must be a string, not {type(value).__name__}")
    if not value and not empty:
        fail(error, field, "must not be empty")
    if len(value) > max_len:
        fail(error, field, f"longer than {max_len} characters")
    if "\x00" in value:
        fail(error, field, "contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        reason = f"not Unicode text: a lone surrogate at character {exc.start} (non-UTF-8 bytes?)"
        fail(error, field, reason)
    return value


def optional_text(error: ErrorType, field: str, value: object, *, max_len: int) -> str | None:
    return None if value is None else text(error, field, value, max_len=max_len, empty=True)


def number(
    error: ErrorType,
    field: str,
    value: object,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    positive: bool = False,
) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        fail(error, field, f"must be a number, not {type(value).__name__}")
    if not math.isfinite(value):
        fail(error, field, "must be finite")
    if positive and value <= 0:
        fail(error, field, "must be greater than 0")
    if minimum is not None and value < minimum:
        fail(error, field, f"must be at least {minimum:g}")
    if maximum is not None and value > maximum:
        fail(error, field, f"must be at most {maximum:g}")
    return float(value)


def integer(error: ErrorType, field: str, value: object, *, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        fail(error, field, f"must be an integer, not {type(value).__name__}")
    if not minimum <= value <= maximum:
        fail(error, field, f"must be between {minimum} and {maximum}")
    return value


def uuid_text(error: ErrorType, field: str, value: object) -> str:
    """A canonical lowercase UUID string (what ComfyUI accepts as a prompt id)."""
    if not isinstance(value, str):
        fail(error, field, f"must be a UUID string, not {type(value).__name__}")
    try:
        canonical = str(uuid.UUID(value))
    except ValueError:
        fail(error, field, f"not a UUID: {value[:80]!r}")
    if canonical != value:
        fail(error, field, f"must be the canonical lowercase form {canonical!r}")
    return value


def labels(error: ErrorType, field: str, value: object) -> dict[str, str]:
    """Short string → string tags (``team``, ``project``, ``batch`` …) for filtering and display."""
    items = mapping(error, field, value)
    if len(items) > 32:
        fail(error, field, "at most 32 labels")
    for key, item in items.items():
        if not isinstance(key, str) or not _LABEL_KEY.fullmatch(key):
            fail(error, field, f"label name {key!r} must be 1-64 of A-Z a-z 0-9 _ . - /")
        text(error, f"{field}.{key}", item, max_len=256, empty=True)
    return dict(items)


def json_size(error: ErrorType, field: str, value: object, *, max_bytes: int) -> int:
    """Size of ``value`` as compact JSON; fails if it is not JSON-safe or larger than allowed."""
    size = _plain_json_size(value)
    if size is not None:
        if size > max_bytes:
            fail(error, field, f"{size} bytes of JSON, more than the limit of {max_bytes}")
        return size
    try:
        encoded = json.dumps(value, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
        size = len(encoded.encode("utf-8"))
    except UnicodeEncodeError as exc:
        fail(error, field, f"not JSON-safe: text with a lone surrogate ({exc.reason})")
    except (TypeError, ValueError, RecursionError) as exc:
        fail(error, field, f"not JSON-safe: {exc}")
    if size > max_bytes:
        fail(error, field, f"{size} bytes of JSON, more than the limit of {max_bytes}")
    return size


_PLAIN_DEPTH = 100
_INFINITIES = (math.inf, -math.inf)


def _plain_json_size(value: object) -> int | None:
    """The compact JSON size of a value made only of the plain JSON types (exactly: dict with
    str keys, list, tuple, str, int, finite float, bool, None; at most 100 deep), measured by
    orjson, several times faster than the standard library on a prompt (the gateway's submit
    path builds a JobSpec per request). None: orjson is not installed (it comes with the
    gateway extra), or the value needs the careful path (``json_size`` then decides exactly as
    before). Only floats in exponent form are written differently (``1e16``, not ``1e+16``):
    the size may differ by a byte or two per such float."""
    if _orjson is None:
        return None
    stack: list[tuple[object, int]] = [(value, 0)]
    pop, push = stack.pop, stack.append
    while stack:
        item, depth = pop()
        kind = type(item)
        if kind is str or kind is int or kind is bool or item is None:
            continue
        if kind is float:
            if item != item or item in _INFINITIES:
                return None
        elif kind is dict:
            if depth >= _PLAIN_DEPTH:
                return None
            for key, child in item.items():  # type: ignore[attr-defined]
                if type(key) is not str:
                    return None
                push((child, depth + 1))
        elif kind is list or kind is tuple:
            if depth >= _PLAIN_DEPTH:
                return None
            for child in item:  # type: ignore[attr-defined]
                push((child, depth + 1))
        else:
            return None
    try:
        return len(_orjson.dumps(value))
    except _orjson.JSONEncodeError:  # a lone surrogate, an integer past 64 bits: careful path
        return None


def string_keys(error: ErrorType, field: str, value: object) -> dict[str, Any]:
    items = mapping(error, field, value)
    for key in items:
        if not isinstance(key, str):
            fail(error, field, f"keys must be strings, not {key!r}")
    return dict(items)


def list_of(error: ErrorType, field: str, value: object, *, max_items: int) -> list[Any]:
    if not isinstance(value, list | tuple):
        fail(error, field, f"must be a list, not {type(value).__name__}")
    if len(value) > max_items:
        fail(error, field, f"at most {max_items} items")
    return list(value)


def url(
    error: ErrorType, field: str, value: object, *, schemes: tuple[str, ...], max_len: int = 2048
) -> str:
    checked = text(error, field, value, max_len=max_len)
    try:
        parts = urlsplit(checked)
    except ValueError as exc:
        fail(error, field, f"not a URL: {exc}")
    if parts.scheme not in schemes:
        fail(error, field, f"scheme must be one of {', '.join(schemes)}")
    if parts.scheme in ("http", "https", "s3", "memory") and not parts.netloc:
        fail(error, field, "needs a host (or bucket/store name)")
    return checked


def relative_path(error: ErrorType, field: str, value: object, *, max_len: int) -> str:
    """A relative POSIX path without ``.``/``..``/empty parts or backslashes ('' allowed)."""
    checked = text(error, field, value, max_len=max_len, empty=True)
    if not checked:
        return checked
    if checked.startswith("/") or "\\" in checked:
        fail(error, field, "must be a relative POSIX path (no leading '/', no backslash)")
    for part in checked.split("/"):
        if part in ("", ".", ".."):
            fail(error, field, "must not contain empty, '.' or '..' parts")
    return checked


def filename(error: ErrorType, field: str, value: object) -> str:
    """A plain file name: no directory separators, not ``.`` or ``..``."""
    checked = text(error, field, value, max_len=255)
    if "/" in checked or "\\" in checked or checked in (".", ".."):
        fail(error, field, "must be a plain file name (no '/', '\\', '.' or '..')")
    return checked
