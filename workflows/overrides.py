"""Overrides: ``--set ADDRESS=VALUE`` addresses an input of an API prompt without knowing node ids.

Address forms (the input name always comes last, after a dot):

=========================  ===================================================================
``6.text``                 node id ``6``
``"Positive Prompt".text``  node title (``_meta.title``; a UI title becomes ``_meta.title``);
                           quoted: titles only; unquoted (``Refiner.steps``) titles and classes
``KSampler.seed``          class type (or title), when exactly one node matches
``KSampler[1].seed``       the second (0-based) of the nodes with that title or class, counted
                           in node id order; an ambiguous address lists them all
``/6/inputs/text``         a JSON pointer (RFC 6901) into the prompt
=========================  ===================================================================

A value is parsed as JSON when it parses (``30``, ``true``, ``[1, 2]``, ``"7"``) and kept as the
typed text otherwise (``a cat``, ``random``).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from comfyfarm.workflows.errors import ParameterError
from comfyfarm.workflows.jsonsafe import strict_loads
from comfyfarm.workflows.problems import Target, general
from comfyfarm.workflows.schema import InputSpec, SchemaSource

_INDEXED = re.compile(r"^(?P<base>.*)\[(?P<index>-?\d+)\]$")
_INDEX_PREFIX = re.compile(r"^\[(-?\d+)\]")


@dataclass(frozen=True)
class Setting:
    """One assignment from the command line: a parameter name or an address, and its value."""

    key: str
    value: Any
    raw: str | None  # the text the value was parsed from (None for values from TOML files)
    origin: str  # "param", "set", "sweep" or "default"


@dataclass(frozen=True)
class Address:
    """A parsed address: a JSON pointer, or a node selector (+ index) and an input name."""

    text: str
    pointer: tuple[str, ...] | None = None
    selector: str | None = None
    index: int | None = None
    input_name: str | None = None
    quoted: bool = False  # a quoted selector is a title, never a class or id


def parse_value(text: str) -> Any:
    """JSON when the text is JSON, else the text itself (``NaN``, ``Infinity``, over-long
    integers and deep nesting are not JSON here: they stay text, and a number input refuses
    them by name)."""
    try:
        return strict_loads(text)
    except ValueError:
        return text


def split_assignment(text: str, *, flag: str) -> tuple[str, str]:
    """``KEY=VALUE`` split at the first ``=`` outside double quotes."""
    quoted = False
    for position, char in enumerate(text):
        if char == '"':
            quoted = not quoted
        elif char == "=" and not quoted:
            key = text[:position].strip()
            if key:
                return key, text[position + 1 :]
            break
    raise ParameterError(
        problems=[
            general("bad_address", f"{flag} {text!r} is not NAME=VALUE", f"e.g. {flag} steps=30")
        ]
    )


def parse_setting(text: str, *, origin: str, flag: str) -> Setting:
    key, raw = split_assignment(text, flag=flag)
    return Setting(key=key, value=parse_value(raw), raw=raw, origin=origin)


def is_address(key: str) -> bool:
    """True when ``key`` is an address rather than a parameter name."""
    return key.startswith("/") or "." in key


def parse_address(text: str) -> Address:
    """Split ``selector.input`` / ``"title".input`` / ``/json/pointer``; raises ParameterError."""
    if text.startswith("/"):
        tokens = tuple(t.replace("~1", "/").replace("~0", "~") for t in text[1:].split("/"))
        return Address(text, pointer=tokens)
    if text.startswith('"'):
        end = text.find('"', 1)
        rest = text[end + 1 :] if end > 0 else ""
        index = None
        if match := _INDEX_PREFIX.match(rest):
            index, rest = int(match[1]), rest[match.end() :]
        if not rest.startswith("."):
            raise _bad(text, 'a quoted title is followed by .INPUT: "My Title".text')
        return _selector_address(text, text[1:end], index, rest[1:], quoted=True)
    if "." not in text:
        raise _bad(text, "an address is NODE.INPUT (node id, title or class) or /json/pointer")
    selector, input_name = text.rsplit(".", 1)
    index = None
    if match := _INDEXED.match(selector):
        selector, index = match["base"], int(match["index"])
    return _selector_address(text, selector, index, input_name)


def resolve_address(
    address: Address, prompt: Mapping[str, Any], schema: SchemaSource | None
) -> Target | tuple[str, ...]:
    """The input an address names (a JSON pointer elsewhere than an input stays a path)."""
    if address.pointer is not None:
        tokens = address.pointer
        if len(tokens) == 3 and tokens[1] == "inputs" and tokens[0] in prompt:
            return _target(prompt, tokens[0], tokens[2], address, schema)
        _check_pointer(prompt, tokens, address)
        return tokens
    assert address.selector is not None and address.input_name is not None
    node_id = find_node(
        prompt, address.selector, address.index, address.text, titles_only=address.quoted
    )
    return _target(prompt, node_id, address.input_name, address, schema)


def find_node(
    prompt: Mapping[str, Any],
    selector: str,
    index: int | None,
    text: str,
    *,
    titles_only: bool = False,
) -> str:
    """The id of the node a selector names (raises ParameterError).

    A node id wins; otherwise every node whose title or class type is the selector is a
    candidate (titles only when the selector was quoted), counted in node id order.
    """
    if index is None and selector in prompt and not titles_only:
        return selector
    candidates = sorted(
        (
            k
            for k, n in prompt.items()
            if _title(n) == selector or (not titles_only and _class(n) == selector)
        ),
        key=_id_order,
    )
    if not candidates:
        names = (
            list(prompt)
            + [_title(n) for n in prompt.values()]
            + [_class(n) for n in prompt.values()]
        )
        close = difflib.get_close_matches(selector, [n for n in names if n], n=3, cutoff=0.6)
        fix = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else None
        raise _bad(text, f"no node has id, title or class {selector!r}", fix)
    listing = "; ".join(
        f"{selector}[{i}] = node {node_id} ({_title(prompt[node_id]) or _class(prompt[node_id])})"
        for i, node_id in enumerate(candidates)
    )
    if index is not None:
        if -len(candidates) <= index < len(candidates):
            return candidates[index]
        raise _bad(text, f"{len(candidates)} node(s) match {selector!r}: {listing}")
    if len(candidates) > 1:
        raise ParameterError(
            problems=[
                general(
                    "ambiguous_address",
                    f"{text!r} is ambiguous: {len(candidates)} nodes match {selector!r}",
                    f"say which one: {listing}",
                )
            ]
        )
    return candidates[0]


def input_spec(
    prompt: Mapping[str, Any], target: Target, schema: SchemaSource | None
) -> InputSpec | None:
    """The schema of a target input (None without schemas or for unknown node classes)."""
    node_schema = schema.node(_class(prompt[target.node_id])) if schema else None
    return node_schema.inputs.get(target.input_name) if node_schema else None


def set_input(prompt: dict[str, Any], target: Target, value: Any) -> None:
    inputs = prompt[target.node_id].setdefault("inputs", {})
    inputs[target.input_name] = {"__value__": value} if isinstance(value, list) else value


def set_pointer(prompt: dict[str, Any], tokens: tuple[str, ...], value: Any) -> None:
    parent: Any = prompt
    for token in tokens[:-1]:
        parent = parent[int(token)] if isinstance(parent, list) else parent[token]
    if isinstance(parent, list):
        parent[int(tokens[-1])] = value
    else:
        parent[tokens[-1]] = value


def _target(
    prompt: Mapping[str, Any],
    node_id: str,
    input_name: str,
    address: Address,
    schema: SchemaSource | None,
) -> Target:
    node = prompt[node_id]
    target = Target(node_id, input_name, _title(node) or None, _class(node) or None)
    node_schema = schema.node(_class(node)) if schema else None
    known = list(node_schema.inputs) if node_schema else list(_inputs(node))
    if input_name in known or (node_schema is None and schema is not None):
        return target
    visible = [n for n in known if not (node_schema and node_schema.inputs[n].section == "hidden")]
    close = difflib.get_close_matches(input_name, visible, n=3, cutoff=0.5)
    fix = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else None
    has = ", ".join(visible)
    message = f"node {node_id} ({target.class_type}) has no input {input_name!r} (it has: {has})"
    raise _bad(address.text, message, fix)


def _check_pointer(prompt: Mapping[str, Any], tokens: tuple[str, ...], address: Address) -> None:
    parent: Any = prompt
    for token in tokens[:-1]:
        try:
            parent = parent[int(token)] if isinstance(parent, list) else parent[token]
        except (KeyError, IndexError, ValueError, TypeError):
            raise _bad(address.text, f"the pointer has no {token!r} here") from None
    if not isinstance(parent, (dict, list)) or not tokens:
        raise _bad(address.text, "the pointer does not end inside an object")


def _selector_address(
    text: str, selector: str, index: int | None, input_name: str, *, quoted: bool = False
) -> Address:
    if not selector or not input_name:
        raise _bad(text, "an address is NODE.INPUT (node id, title or class) or /json/pointer")
    return Address(text, selector=selector, index=index, input_name=input_name, quoted=quoted)


def _bad(text: str, message: str, fix: str | None = None) -> ParameterError:
    return ParameterError(problems=[general("bad_address", f"{text!r}: {message}", fix)])


def _title(node: Any) -> str:
    meta = node.get("_meta") if isinstance(node, dict) else None
    title = meta.get("title") if isinstance(meta, dict) else None
    return title if isinstance(title, str) else ""


def _class(node: Any) -> str:
    value = node.get("class_type") if isinstance(node, dict) else None
    return value if isinstance(value, str) else ""


def _inputs(node: Any) -> dict[str, Any]:
    inputs = node.get("inputs") if isinstance(node, dict) else None
    return inputs if isinstance(inputs, dict) else {}


def _id_order(node_id: str) -> tuple[int, tuple[int, ...], str]:
    parts = node_id.split(":")
    if all(part.isdigit() for part in parts):
        return (0, tuple(int(part) for part in parts), "")
    return (1, (), node_id)
