"""JSON a workflow may contain: what can travel to a worker and to ComfyUI unchanged.

Python's ``json`` accepts more than JSON and more than the farm can carry: ``NaN`` and
``Infinity`` (not JSON; ComfyUI and Redis consumers choke on them), strings with lone surrogates
(``"\\udcff"``: valid in a Python ``str``, not encodable as UTF-8 — what non-UTF-8 bytes on a
command line become), integers of thousands of digits (``int()`` refuses them past 4300 digits)
and nesting deep enough to exhaust the interpreter's recursion (``RecursionError``). Each of
them used to surface as a traceback somewhere later.

``strict_loads`` parses refusing all of them; ``json_problem`` finds the first such value in
data that did not come from text (a dict passed to the API, a value set by ``--param``),
returning where it is as a dotted path so the error can name it.
"""

from __future__ import annotations

import json
from typing import Any

#: Deepest nesting accepted (a UI workflow is under 10 levels).
MAX_DEPTH = 100
#: Most digits of an integer (ComfyUI's largest, a 64-bit seed, has 20).
MAX_INT_DIGITS = 40


class JsonValueError(ValueError):
    """Raised by ``strict_loads`` for text that is JSON Python would accept but we do not."""

    def __init__(self, reason: str, *, path: str = "") -> None:
        super().__init__(f"{path}: {reason}" if path else reason)
        self.reason = reason
        self.path = path


def _no_constant(name: str) -> Any:
    raise JsonValueError(f"{name} is not a JSON number (NaN and Infinity are not allowed)")


def strict_loads(text: str) -> Any:
    """``json.loads`` that refuses NaN/Infinity, very long integers, deep nesting and lone
    surrogates (``JsonValueError``); malformed text still raises ``json.JSONDecodeError``."""
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise JsonValueError(f"nested more than {MAX_DEPTH} levels deep") from None
    except json.JSONDecodeError:
        raise
    except JsonValueError:
        raise
    except ValueError:  # int(): "Exceeds the limit (4300 digits) for integer string conversion"
        raise JsonValueError(f"an integer of more than {MAX_INT_DIGITS} digits") from None
    found = json_problem(data)
    if found is not None:
        path, reason = found
        raise JsonValueError(reason, path=path)
    return data


def json_problem(value: Any, path: str = "") -> tuple[str, str] | None:
    """``(dotted path, reason)`` of the first value in ``value`` that cannot travel as JSON, or
    None. Walks iteratively: depth is checked, never recursed into."""
    if is_plain_json(value):  # the common case, without building a path per value
        return None
    stack: list[tuple[str, Any, int]] = [(path, value, 0)]
    while stack:
        where, item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return where, f"nested more than {MAX_DEPTH} levels deep"
        if isinstance(item, str):
            reason = _text_problem(item)
            if reason:
                return where, reason
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if abs(item) >= 10**MAX_INT_DIGITS:
                return where, f"an integer of more than {MAX_INT_DIGITS} digits"
        elif isinstance(item, float):
            if item != item or item in (float("inf"), float("-inf")):
                return where, f"{item} is not a JSON number (NaN and Infinity are not allowed)"
        elif isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    return where, f"key {key!r} is not a string"
                reason = _text_problem(key)
                if reason:
                    return where, f"key: {reason}"
                stack.append((_join(where, key), child, depth + 1))
        elif isinstance(item, list | tuple):
            for index, child in enumerate(item):
                stack.append((_join(where, str(index)), child, depth + 1))
        else:
            return where, f"a {type(item).__name__} is not a JSON value"
    return None


_INFINITIES = (float("inf"), float("-inf"))
_LARGEST_INT = 10**MAX_INT_DIGITS


def is_plain_json(value: Any) -> bool:
    """True when ``value`` certainly travels as JSON: only dicts with string keys, lists and
    tuples, UTF-8-encodable strings, bounded integers, finite floats, booleans and None, at most
    ``MAX_DEPTH`` deep. False means "look closer" (``json_problem`` then names the problem), so
    this may be strict about types (subclasses are looked at closer)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    pop, push = stack.pop, stack.append
    while stack:
        item, depth = pop()
        kind = type(item)
        if kind is str:
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return False
        elif kind is int:
            if not -_LARGEST_INT < item < _LARGEST_INT:
                return False
        elif kind is bool or item is None:
            continue
        elif kind is float:
            if item != item or item in _INFINITIES:
                return False
        elif kind is dict:
            if depth >= MAX_DEPTH:
                return False
            for key, child in item.items():
                if type(key) is not str or (not key.isascii() and _text_problem(key)):
                    return False
                push((child, depth + 1))
        elif kind is list or kind is tuple:
            if depth >= MAX_DEPTH:
                return False
            for child in item:
                push((child, depth + 1))
        else:
            return False
    return True


def _text_problem(text: str) -> str | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        char = text[exc.start]
        return (
            f"text with a lone surrogate {char!a} at character {exc.start} (not Unicode text; "
            "non-UTF-8 bytes, e.g. on a command line, become these)"
        )
    return None


def _join(path: str, part: str) -> str:
    return f"{path}.{part}" if path else part
