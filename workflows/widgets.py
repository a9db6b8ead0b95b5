"""Widget values: a node's ``widgets_values`` read into named inputs, as the editor serializes them.

Rules (UI_TO_API_MAPPING.md): slots follow the schema's input order (required, then optional),
only widget inputs take slots, an input with a control_after_generate widget (``seed``,
``noise_seed``, or ``control_after_generate: true``) takes a second slot that is never sent, extra
trailing slots (upload buttons) are ignored, missing or null values fall back to the widget
default, dict ``widgets_values`` are keyed by input name, and array values are wrapped as
``{"__value__": [...]}`` so the server does not take them for links.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from comfyfarm.workflows.schema import InputSpec, NodeSchema

# What a control_after_generate slot holds; very old workflows stored a boolean there.
CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize"})


def is_control_value(value: Any) -> bool:
    return isinstance(value, bool) or (isinstance(value, str) and value in CONTROL_VALUES)


def wrap_value(value: Any) -> Any:
    """Arrays are reserved for links in API format; a literal array travels as ``__value__``."""
    return {"__value__": value} if isinstance(value, list) else value


def read_widgets(
    values: list[Any] | dict[str, Any] | None, specs: list[InputSpec]
) -> dict[str, Any]:
    """Named values of ``specs`` (widget inputs in slot order) taken from ``values``."""
    named: dict[str, Any] = {}
    if isinstance(values, dict):
        for spec in specs:
            value = values.get(spec.name)
            named[spec.name] = spec.default_value() if value is None else value
        return named
    slots = values or []
    index = 0
    for spec in specs:
        value = slots[index] if index < len(slots) else None
        index += 1
        if spec.has_control_widget and index < len(slots) and is_control_value(slots[index]):
            index += 1
        named[spec.name] = spec.default_value() if value is None else value
    return named


def widget_inputs(
    values: list[Any] | dict[str, Any] | None,
    schema: NodeSchema,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """API ``inputs`` holding every widget value of one node (links are added afterwards)."""
    named = read_widgets(values, schema.widget_inputs)
    if overrides:
        for name, value in overrides.items():
            if name in named:
                named[name] = value
    return {name: wrap_value(value) for name, value in named.items()}
