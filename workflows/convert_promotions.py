"""Promoted subgraph widgets as the editor keeps them: one value per definition, not per instance.

In the editor (frontend 1.27.10) a promoted widget of a subgraph instance is a view of the inner
widget, and all instances of one definition share that inner node. So every instance sends the
value written last while the workflow was loaded: the definitions are configured in order (each
first sets its inner widgets, then the instances inside it write theirs), then the root graph's
instances. Checked against the editor itself (``tools/editor_oracle``).

Where all writers agree, conversion gives every instance that value, exactly as the editor does.
Where an instance's saved value would be silently replaced (by another instance's, or by the
subgraph's own inner value configured after it), conversion refuses, naming the instances and
the value the editor would send. Instances using ``properties.proxyWidgets`` (newer editors keep
values per instance) are left out.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from comfyfarm.workflows.convert_subgraphs import (
    SubgraphMismatch,
    configured_instance,
    definition_inputs,
    promoted_values,
    widget_target,
)
from comfyfarm.workflows.problems import Problem
from comfyfarm.workflows.schema import SchemaSource
from comfyfarm.workflows.uigraph import UIGraph, UINode
from comfyfarm.workflows.widgets import read_widgets

IsWidget = Callable[[UINode, str], bool]
_UNKNOWN = object()  # a value we cannot work out


@dataclass(frozen=True)
class Promotion:
    """One instance's saved value for a promoted widget, and where that instance sits."""

    value: Any
    node_id: str
    inside: str | None  # the name of the subgraph holding the instance; None: the root graph


# In a write history: the subgraph's own inner node set the value (its definition configured).
OWN_VALUE = None

Write = Promotion | None


def promotion_history(
    ui: Mapping[str, Any],
    subgraphs: Mapping[str, Mapping[str, Any]],
    is_widget: IsWidget,
) -> dict[tuple[str, str], list[Write]]:
    """Who sets each promoted widget, in the order the editor does, by (definition id, input).

    The editor (frontend 1.27.10) keeps a promoted widget's value in the inner widget, which all
    instances of one definition share, so the last write wins for every instance. It configures
    the definitions in order (each first sets its inner widgets: ``OWN_VALUE``, then the
    instances inside it write), then the root graph's instances. Instances using
    ``properties.proxyWidgets`` (newer editors: values per instance) are left out."""
    history: dict[tuple[str, str], list[Write]] = {}
    for def_id, holder in subgraphs.items():
        for entry in definition_inputs(holder):
            history.setdefault((def_id, str(entry.get("name", ""))), []).append(OWN_VALUE)
        label = str(holder.get("name") or def_id)
        for node in UIGraph.parse(holder).nodes.values():
            _record(history, node, label, subgraphs, is_widget)
    for node in UIGraph.parse(ui).nodes.values():
        _record(history, node, None, subgraphs, is_widget)
    return history


def _record(
    history: dict[tuple[str, str], list[Write]],
    node: UINode,
    inside: str | None,
    subgraphs: Mapping[str, Mapping[str, Any]],
    is_widget: IsWidget,
) -> None:
    definition = subgraphs.get(node.type)
    if definition is None or isinstance(node.properties.get("proxyWidgets"), list):
        return
    graph = UIGraph.parse(definition)
    try:
        configured = configured_instance(node, definition, graph)
    except SubgraphMismatch:
        return  # reported where the instance is expanded
    for index, value in promoted_values(configured, definition, graph, is_widget).items():
        key = (node.type, configured.inputs[index].name)
        history.setdefault(key, []).append(Promotion(value, node.id, inside))


def shared_values(
    ui: Mapping[str, Any],
    subgraphs: Mapping[str, Mapping[str, Any]],
    schema: SchemaSource,
    is_widget: IsWidget,
) -> tuple[dict[tuple[str, str], Any], list[Problem]]:
    """The value each promoted widget sends, by (definition id, input name), and the problems
    where the editor would silently replace an instance's saved value."""
    shared: dict[tuple[str, str], Any] = {}
    problems: list[Problem] = []
    for key, writes in promotion_history(ui, subgraphs, is_widget).items():
        saved = [w for w in writes if w is not None]
        if not saved:
            continue
        last, definition = writes[-1], subgraphs[key[0]]
        final = (
            last.value if last is not None else _own_value(definition, key[1], schema, is_widget)
        )
        if not [w for w in saved if final is _UNKNOWN or _differs(w.value, final)]:
            if last is not None:
                shared[key] = final
            continue
        said = "its own inner value" if last is None else repr(final)
        problems.append(_replaced(definition, key, saved, said))
    return shared, problems


def _own_value(
    definition: Mapping[str, Any], name: str, schema: SchemaSource, is_widget: IsWidget
) -> Any:
    """The value the inner widget promoted as ``name`` holds by itself."""
    entry = next((e for e in definition_inputs(definition) if e.get("name") == name), None)
    found = widget_target(entry, UIGraph.parse(definition), is_widget) if entry else None
    node_schema = schema.node(found[0].type) if found else None
    if found is None or node_schema is None:
        return _UNKNOWN
    return read_widgets(found[0].widgets_values, node_schema).get(found[1], _UNKNOWN)


def _replaced(
    definition: Mapping[str, Any], key: tuple[str, str], saved: list[Promotion], final: str
) -> Problem:
    def_id, name = key
    label = str(definition.get("name") or def_id)
    where = ", ".join(
        f"{p.value!r} on node {p.node_id}" + (f" inside {p.inside!r}" if p.inside else "")
        for p in saved
    )
    message = (
        f"instances of subgraph {label!r} promote {name!r} ({where}), but the editor keeps "
        f"one value per subgraph and would send {final} to all of them"
    )
    fix = "give them the same value, or unpack the instances so each has its own nodes"
    first = next((p for p in saved if p.inside is None), saved[0])
    return Problem(first.node_id, None, def_id, name, "conversion", message, fix)


def _differs(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True, default=str) != json.dumps(b, sort_keys=True, default=str)
