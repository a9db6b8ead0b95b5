"""The flattened graph that conversion walks: one ExecNode per node instance, grouped in scopes.

This mirrors the editor's ``ExecutableNodeDTO``: subgraph and group node instances are expanded
into inner nodes whose ids are prefixed with the instance path (``"12:5"``, ``"12:7:3"``), and every
input is resolved lazily by walking links backwards through reroutes, bypassed nodes, primitives
and subgraph boundaries until a real output (``LinkRef``) or a literal value (``Literal``) is found.

A ``Scope`` knows how inputs of its nodes are wired (the root graph and subgraph interiors read
``links``; legacy group nodes read their own link table) and how the outputs of the instance that
owns it map to inner outputs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from comfyfarm.workflows.uigraph import (
    SUBGRAPH_INPUT_ID,
    SUBGRAPH_OUTPUT_ID,
    UIGraph,
    UILink,
    UINode,
)


@dataclass(frozen=True)
class LinkRef:
    """An input fed by output ``slot`` of the emitted node ``node_id``."""

    node_id: str
    slot: int


@dataclass(frozen=True)
class Literal:
    """An input fed by a value (a PrimitiveNode, or a promoted subgraph widget)."""

    value: Any


Resolved = LinkRef | Literal


@dataclass(eq=False)
class ExecNode:
    """One node instance in the flattened graph."""

    exec_id: str
    node: UINode
    scope: Scope
    mode: int
    # Widget values set from outside the node (group node widgets), by input name.
    widget_overrides: dict[str, Any] = field(default_factory=dict)
    # Inputs fed by a slot of another node: input name -> (node, input slot index).
    extra_sources: dict[str, tuple[ExecNode, int]] = field(default_factory=dict)
    # Values of promoted widgets of a subgraph instance, by instance input slot.
    promoted: dict[int, Any] = field(default_factory=dict)
    # The scope of the inner nodes when this is a subgraph or group node instance.
    inner: Scope | None = None

    @property
    def title(self) -> str | None:
        return self.node.title


class Resolver(Protocol):
    """What a scope may ask the converter while resolving (implemented by ``Converter``)."""

    def node(self, exec_id: str) -> ExecNode | None: ...

    def resolve_input(
        self, en: ExecNode, slot: int, visited: set[str], type_: str | None = None
    ) -> Resolved | None: ...

    def resolve_output(
        self, en: ExecNode, slot: int, type_: str, visited: set[str]
    ) -> Resolved | None: ...

    def instance_input(
        self, instance: ExecNode, slot: int, visited: set[str]
    ) -> Resolved | None: ...


class Scope(ABC):
    """The nodes of one graph level and how their inputs are wired."""

    def __init__(self, prefix: str, instance: ExecNode | None) -> None:
        self.prefix = prefix  # "" for the root graph, "12:" inside instance 12
        self.instance = instance

    @abstractmethod
    def input_source(
        self, resolver: Resolver, en: ExecNode, slot: int, type_: str, visited: set[str]
    ) -> Resolved | None:
        """What feeds input ``slot`` of ``en`` (a node of this scope)."""

    @abstractmethod
    def output_source(
        self, resolver: Resolver, slot: int, type_: str, visited: set[str]
    ) -> Resolved | None:
        """What output ``slot`` of the owning instance really is."""


class GraphScope(Scope):
    """The root graph, or the interior of one subgraph instance (links read from ``links``)."""

    def __init__(self, graph: UIGraph, prefix: str = "", instance: ExecNode | None = None) -> None:
        super().__init__(prefix, instance)
        self.graph = graph
        self._outputs: dict[int, UILink] = {
            link.target_slot: link
            for link in graph.links.values()
            if link.target_id == SUBGRAPH_OUTPUT_ID
        }

    def input_source(
        self, resolver: Resolver, en: ExecNode, slot: int, type_: str, visited: set[str]
    ) -> Resolved | None:
        link_id = en.node.inputs[slot].link
        link = self.graph.links.get(link_id) if link_id is not None else None
        if link is None:
            return None
        return self._origin(resolver, link, type_, visited)

    def output_source(
        self, resolver: Resolver, slot: int, type_: str, visited: set[str]
    ) -> Resolved | None:
        link = self._outputs.get(slot)
        if link is None:
            return None
        return self._origin(resolver, link, type_, visited)

    def _origin(
        self, resolver: Resolver, link: UILink, type_: str, visited: set[str]
    ) -> Resolved | None:
        if link.origin_id == SUBGRAPH_INPUT_ID and self.instance is not None:
            return resolver.instance_input(self.instance, link.origin_slot, visited)
        origin = resolver.node(self.prefix + link.origin_id)
        if origin is None:
            return None
        return resolver.resolve_output(origin, link.origin_slot, type_, visited)


def is_valid_connection(a: str, b: str) -> bool:
    """LiteGraph's socket compatibility: ``*``/empty match all, else case-insensitive type sets."""
    if a in ("", "*") or b in ("", "*"):
        return True
    first, second = a.lower(), b.lower()
    if "," not in first and "," not in second:
        return first == second
    return bool({t.strip() for t in first.split(",")} & {t.strip() for t in second.split(",")})


def bypass_slot(node: UINode, slot: int, type_: str) -> int:
    """The input a bypassed node passes on as output ``slot`` (-1: none), as the editor does."""
    inputs = node.inputs
    if not inputs:
        return -1
    if type_ in ("*", ""):
        return slot if len(inputs) > slot else 0
    output_type = node.outputs[slot].type if slot < len(node.outputs) else "*"
    if slot < len(inputs):
        same = inputs[slot].type
        if is_valid_connection(same, output_type) and is_valid_connection(same, type_):
            return slot
    for index, candidate in enumerate(inputs):
        if candidate.type == type_:
            return index
    for index, candidate in enumerate(inputs):
        if is_valid_connection(candidate.type, output_type) and is_valid_connection(
            candidate.type, type_
        ):
            return index
    return -1


def primitive_value(node: UINode, overrides: Mapping[str, Any]) -> Literal | None:
    """The value a PrimitiveNode copies into the widgets it feeds."""
    if "value" in overrides:
        return Literal(overrides["value"])
    values = node.widgets_values
    if isinstance(values, list) and values:
        return Literal(values[0])
    if isinstance(values, dict) and "value" in values:
        return Literal(values["value"])
    return None
