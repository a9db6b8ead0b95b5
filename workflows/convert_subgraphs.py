"""Subgraph instances as the editor configures them: inputs by name, promoted widgets by position.

A subgraph instance saved in a workflow lists its inputs as they were when it was saved; the
definition (``definitions.subgraphs[]``) may have gained, lost or reordered inputs since. The
editor (``ComfyNode.configure``, frontend 1.27.10) rebuilds the instance's inputs in the
definition's order and takes each saved input (its link) **by name**; saved inputs the
definition does not have are kept after them. Links inside the subgraph name the definition's
input by index (``origin_slot``), so reading the saved list by index instead wires a ``cfg`` to
the source of ``steps`` (issue 11). This module does what the editor does, and refuses with a
reason what the editor would refuse (an inner link from an input the definition lacks) and what
it would silently miswire (two inputs of one name).

Promoted widgets: an instance input shows a widget when one of the inner inputs it feeds is a
widget; the instance's ``widgets_values`` fill those widgets in input order. The editor's newer
promotion (``properties.proxyWidgets``) names inner widgets explicitly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from comfyfarm.workflows.uigraph import SUBGRAPH_INPUT_ID, InputSlot, UIGraph, UINode, node_key

# A proxyWidgets entry whose target is the subgraph's own input (by name), not an inner node.
SUBGRAPH_INPUT_TARGET = "-1"


class SubgraphMismatch(Exception):
    """Raised when an instance cannot be wired to its definition; the message says why."""


def subgraph_definitions(ui: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Every subgraph definition by id, nested definitions included."""
    found: dict[str, Mapping[str, Any]] = {}
    pending: list[Mapping[str, Any]] = [ui]
    while pending:
        current = pending.pop()
        definitions = current.get("definitions")
        subgraphs = definitions.get("subgraphs") if isinstance(definitions, Mapping) else None
        for definition in subgraphs if isinstance(subgraphs, list) else []:
            if isinstance(definition, Mapping) and isinstance(definition.get("id"), str):
                if definition["id"] not in found:
                    found[definition["id"]] = definition
                    pending.append(definition)
    return found


def definition_inputs(definition: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The definition's inputs (``{name, type, linkIds}``), in slot order."""
    raw = definition.get("inputs")
    return [entry for entry in raw if isinstance(entry, Mapping)] if isinstance(raw, list) else []


def configured_instance(node: UINode, definition: Mapping[str, Any], graph: UIGraph) -> UINode:
    """``node`` with its inputs in the definition's order, saved links taken by name.

    Raises SubgraphMismatch when an inner link starts at an input slot the definition lacks, or
    when names do not tell inputs apart (the editor would wire them all to one source)."""
    declared = definition_inputs(definition)
    for link in graph.links.values():
        if link.origin_id == SUBGRAPH_INPUT_ID and link.origin_slot >= len(declared):
            raise SubgraphMismatch(
                f"a link inside the subgraph starts at input slot {link.origin_slot}, "
                f"but the definition has {len(declared)} inputs"
            )
    names = [str(entry.get("name", "")) for entry in declared]
    _refuse_ambiguous_names(names, node)
    saved = {slot.name: slot for slot in node.inputs}
    inputs = [
        _merged(saved.get(name), name, str(entry.get("type", "*")))
        for name, entry in zip(names, declared, strict=True)
    ]
    inputs += [slot for slot in node.inputs if slot.name not in set(names)]
    return replace(node, inputs=tuple(inputs))


def _refuse_ambiguous_names(names: list[str], node: UINode) -> None:
    """Inputs are matched by name: two of one name would feed one source to both (the editor's
    last-wins map), a silent miswiring; refuse instead."""
    for name in set(names):
        if names.count(name) > 1:
            raise SubgraphMismatch(f"the subgraph has {names.count(name)} inputs named {name!r}")
    linked: dict[str, set[str | None]] = {}
    for slot in node.inputs:
        linked.setdefault(slot.name, set()).add(slot.link)
    for name, links in linked.items():
        if len(links) > 1:
            raise SubgraphMismatch(f"the instance has inputs named {name!r} with different links")


def _merged(saved: InputSlot | None, name: str, type_: str) -> InputSlot:
    if saved is None:
        return InputSlot(name=name, type=type_, link=None, widget=None)
    return InputSlot(name=name, type=type_, link=saved.link, widget=saved.widget)


def promoted_slots(
    node: UINode,
    definition: Mapping[str, Any],
    graph: UIGraph,
    is_widget: Callable[[UINode, str], bool],
) -> list[int]:
    """Input slots of a configured instance that show a promoted widget, in widget order: those
    feeding an inner widget (``is_widget(inner node, input name)``)."""
    declared = {str(e.get("name", "")): e for e in definition_inputs(definition)}
    return [
        index
        for index, slot in enumerate(node.inputs)
        if slot.name in declared and feeds_widget(declared[slot.name], graph, is_widget)
    ]


def promoted_values(
    node: UINode,
    definition: Mapping[str, Any],
    graph: UIGraph,
    is_widget: Callable[[UINode, str], bool],
) -> dict[int, Any]:
    """Promoted widget values a configured instance saved, by input slot: ``widgets_values`` (a
    list by widget position, or a dict by input name) in promoted-widget order."""
    values = node.widgets_values
    promoted: dict[int, Any] = {}
    for position, index in enumerate(promoted_slots(node, definition, graph, is_widget)):
        name = node.inputs[index].name
        if isinstance(values, dict):
            if name in values:
                promoted[index] = values[name]
        elif isinstance(values, list) and position < len(values) and values[position] is not None:
            promoted[index] = values[position]
    return promoted


def feeds_widget(
    entry: Mapping[str, Any], graph: UIGraph, is_widget: Callable[[UINode, str], bool]
) -> bool:
    """Whether definition input ``entry`` feeds an inner widget (so the instance shows one)."""
    return widget_target(entry, graph, is_widget) is not None


def widget_target(
    entry: Mapping[str, Any], graph: UIGraph, is_widget: Callable[[UINode, str], bool]
) -> tuple[UINode, str] | None:
    """The inner node and input whose widget definition input ``entry`` promotes: the first
    linked inner input that is a widget, as the editor picks it."""
    link_ids = entry.get("linkIds")
    for link_id in link_ids if isinstance(link_ids, list) else []:
        link = graph.links.get(node_key(link_id))
        target = graph.nodes.get(link.target_id) if link is not None else None
        if link is None or target is None:
            continue
        slot = next((s for s in target.inputs if s.link == link.id), None)
        if slot is not None and is_widget(target, slot.input_name):
            return target, slot.input_name
    return None


def proxy_widgets(node: UINode, inherited: Mapping[str, Any]) -> list[tuple[str, str, Any]] | None:
    """``(target node id, widget name, value)`` for each widget a subgraph instance promotes in
    ``properties.proxyWidgets`` (the editor's newer way), its value at the same position of
    ``widgets_values``; an enclosing instance's promotion of the same name (``inherited``) wins.
    None when the instance has no proxyWidgets."""
    raw = node.properties.get("proxyWidgets")
    if not isinstance(raw, list):
        return None
    values = node.widgets_values if isinstance(node.widgets_values, list) else []
    found = []
    for position, entry in enumerate(raw):
        if not (isinstance(entry, list) and len(entry) >= 2 and isinstance(entry[1], str)):
            continue
        target, name = node_key(entry[0]), entry[1]
        if name in inherited:
            found.append((target, name, inherited[name]))
        elif position < len(values) and values[position] is not None:
            found.append((target, name, values[position]))
    return found


def proxied_inputs(node: UINode, proxies: list[tuple[str, str, Any]]) -> dict[int, Any]:
    """Promoted values of the instance's own inputs (target ``-1``), by input slot."""
    slots = {slot.input_name: index for index, slot in enumerate(node.inputs)}
    return {
        slots[name]: value
        for target, name, value in proxies
        if target == SUBGRAPH_INPUT_TARGET and name in slots
    }
