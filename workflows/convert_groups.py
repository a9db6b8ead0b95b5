"""Legacy group nodes (``extra.groupNodes``, node type ``workflow>Name``) expanded for conversion.

A group node definition stores inner nodes by index and links as
``[origin_index, origin_slot, target_index, target_slot, origin_id, type]``. Like the editor's
``GroupNodeConfig`` this module works out, from the node schemas, which inner widgets the group
node shows (their values are the instance's ``widgets_values``, in order, each followed by its
control_after_generate slot where it has one), which inner inputs are group inputs (link inputs not
wired inside the group, in inner-node order, then widgets converted to inputs), and which inner
outputs are group outputs (those not only used inside).
Inner nodes get ids ``"<group id>:<index>"``. An instance's saved inputs are taken by name (as
the editor's ``ComfyNode.configure`` does); a linked one whose name is none of the group's inputs,
which the editor would silently drop, is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from comfyfarm.workflows.errors import ConversionError
from comfyfarm.workflows.execgraph import ExecNode, Resolved, Resolver, Scope
from comfyfarm.workflows.problems import Problem
from comfyfarm.workflows.schema import InputSpec, NodeSchema, SchemaSource
from comfyfarm.workflows.uigraph import InputSlot, UINode, node_key
from comfyfarm.workflows.widgets import is_control_value


@dataclass(frozen=True)
class GroupWidget:
    """One widget of the group node: which inner widget it sets."""

    name: str
    index: int
    input_name: str
    control: bool


@dataclass
class GroupNodeDef:
    """The parts of a group node definition that conversion needs."""

    name: str
    nodes: list[UINode]
    links_to: dict[int, dict[int, tuple[int, int]]] = field(default_factory=dict)
    widgets: list[GroupWidget] = field(default_factory=list)
    input_map: dict[tuple[int, int], int] = field(default_factory=dict)
    input_names: dict[int, str] = field(default_factory=dict)  # group input index -> its name
    output_map: list[tuple[int, int]] = field(default_factory=list)

    @classmethod
    def build(cls, name: str, raw: Mapping[str, Any], schema: SchemaSource) -> GroupNodeDef:
        """Read one ``extra.groupNodes`` entry; raises ConversionError for unknown inner types."""
        return _Builder(name, raw, schema).build()

    def configured(self, node: UINode) -> UINode:
        """``node`` (an instance) with its inputs in the group's order, saved links taken by
        name as the editor does; raises ConversionError where a saved link would be dropped."""
        names = [self.input_names[i] for i in sorted(self.input_names)]
        widgets = {w.name for w in self.widgets}
        saved = {slot.name: slot for slot in node.inputs}
        lost = [
            s.name
            for s in node.inputs
            if s.link is not None and s.name not in names and (s.widget or "") not in widgets
        ]
        if lost:
            raise ConversionError(
                problems=[
                    Problem(
                        node.id,
                        node.title,
                        node.type,
                        lost[0],
                        "conversion",
                        f"group node input {lost[0]!r} is none of the group's inputs "
                        f"({', '.join(map(repr, names))}); the editor would drop its link",
                        "re-connect that input in the editor and save the workflow again",
                    )
                ]
            )
        inputs = [saved.get(n) or InputSlot(n, "*", None, None) for n in names]
        inputs += [slot for slot in node.inputs if slot.name not in names]
        return replace(node, inputs=tuple(inputs))

    def instance_values(
        self, values: list[Any] | dict[str, Any] | None
    ) -> dict[int, dict[str, Any]]:
        """Inner widget values set by a group instance's ``widgets_values``, by inner index."""
        by_node: dict[int, dict[str, Any]] = {}
        if isinstance(values, dict):
            for widget in self.widgets:
                if widget.name in values:
                    by_node.setdefault(widget.index, {})[widget.input_name] = values[widget.name]
            return by_node
        slots = values or []
        position = 0
        for widget in self.widgets:
            if position >= len(slots):
                break
            value = slots[position]
            position += 1
            if widget.control and position < len(slots) and is_control_value(slots[position]):
                position += 1
            if value is not None:
                by_node.setdefault(widget.index, {})[widget.input_name] = value
        return by_node


class GroupScope(Scope):
    """The inner nodes of one group node instance."""

    def __init__(self, definition: GroupNodeDef, instance: ExecNode) -> None:
        super().__init__(instance.exec_id + ":", instance)
        self.definition = definition

    def input_source(
        self, resolver: Resolver, en: ExecNode, slot: int, type_: str, visited: set[str]
    ) -> Resolved | None:
        index = int(en.node.id)
        outer = self.definition.input_map.get((index, slot))
        if outer is not None and self.instance is not None:
            return resolver.resolve_input(self.instance, outer, visited)
        origin = self.definition.links_to.get(index, {}).get(slot)
        if origin is None:
            return None
        source = resolver.node(self.prefix + str(origin[0]))
        if source is None:
            return None
        return resolver.resolve_output(source, origin[1], type_, visited)

    def output_source(
        self, resolver: Resolver, slot: int, type_: str, visited: set[str]
    ) -> Resolved | None:
        if not 0 <= slot < len(self.definition.output_map):
            return None
        index, inner_slot = self.definition.output_map[slot]
        source = resolver.node(self.prefix + str(index))
        if source is None:
            return None
        return resolver.resolve_output(source, inner_slot, type_, visited)


class _Builder:
    """A port of the editor's GroupNodeConfig.registerType, reduced to what conversion needs."""

    def __init__(self, name: str, raw: Mapping[str, Any], schema: SchemaSource) -> None:
        self.name = name
        self.schema = schema
        self.problems: list[Problem] = []
        self.seen: dict[str, int] = {}
        entries = raw.get("nodes")
        entries = entries if isinstance(entries, list) else []
        self.nodes = [
            _with_id(UINode.parse(entry), i)
            for i, entry in enumerate(entries)
            if isinstance(entry, Mapping)
        ]
        config = raw.get("config")
        # JSON object keys are strings: node index "0", output slot "1".
        self.config: Mapping[str, Any] = config if isinstance(config, Mapping) else {}
        self.links_from: dict[int, dict[int, list[list[Any]]]] = {}
        self.links_to: dict[int, dict[int, tuple[int, int]]] = {}
        self.link_types: dict[tuple[int, int], str] = {}
        for link in raw.get("links") or []:
            if not isinstance(link, list) or len(link) < 4 or link[0] is None:
                continue
            try:
                origin, origin_slot, target, target_slot = (int(v) for v in link[:4])
            except (TypeError, ValueError):
                continue  # a link too broken to use: the input stays unconnected
            self.links_from.setdefault(origin, {}).setdefault(origin_slot, []).append(link)
            self.links_to.setdefault(target, {})[target_slot] = (origin, origin_slot)
            if len(link) > 5 and isinstance(link[5], str):
                self.link_types[(origin, origin_slot)] = link[5]
        self.external: dict[int, set[int]] = {}
        for ext in raw.get("external") or []:
            if isinstance(ext, list) and len(ext) >= 2 and all(isinstance(v, int) for v in ext[:2]):
                self.external.setdefault(ext[0], set()).add(ext[1])

    def build(self) -> GroupNodeDef:
        result = GroupNodeDef(self.name, self.nodes, links_to=self.links_to)
        converted_later: list[tuple[int, int, InputSpec]] = []
        inputs_count = 0
        for index, node in enumerate(self.nodes):
            spec = self._node_spec(index, node)
            if spec is None:
                continue
            inputs, outputs = spec
            slots = [s for s in inputs if not s.is_widget]
            converted = sorted(
                (position, s)
                for s in inputs
                if s.is_widget and (position := _widget_position(node, s.name)) is not None
            )
            # Inner inputs as the editor numbers them: link inputs, then converted widgets.
            rebuilt = [InputSlot(s.name, s.type, None, None) for s in slots]
            rebuilt += [InputSlot(s.name, s.type, None, s.name) for _, s in converted]
            self.nodes[index] = replace(node, inputs=tuple(rebuilt))
            for input_spec in inputs:
                if input_spec.is_widget and _widget_position(node, input_spec.name) is None:
                    result.widgets.append(self._widget(index, node, input_spec))
            internal = self.links_to.get(index, {})
            for position, input_spec in enumerate(slots):
                if position in internal:
                    continue
                name = self._name_for(index, node, input_spec.name)
                if self._custom(index, "input", input_spec.name).get("visible") is False:
                    continue
                result.input_map[(index, position)] = inputs_count
                result.input_names[inputs_count] = name
                inputs_count += 1
            for offset, (_, input_spec) in enumerate(converted):
                converted_later.append((index, len(slots) + offset, input_spec))
            for slot in range(len(outputs)):
                linked = bool(self.links_from.get(index, {}).get(slot))
                has_link = linked and slot not in self.external.get(index, set())
                custom = self._custom(index, "output", str(slot))
                if custom.get("visible", not has_link):
                    result.output_map.append((index, slot))
        for index, position, input_spec in converted_later:
            if position in self.links_to.get(index, {}):
                continue
            widget = self._widget(index, self.nodes[index], input_spec)
            result.widgets.append(widget)
            result.input_map[(index, position)] = inputs_count
            result.input_names[inputs_count] = widget.name
            inputs_count += 1
        if self.problems:
            raise ConversionError(problems=self.problems)
        return result

    def _node_spec(self, index: int, node: UINode) -> tuple[list[InputSpec], list[str]] | None:
        """Inputs and output types of inner node ``index``; None for nodes the group skips."""
        if node.type == "PrimitiveNode":
            links = self.links_from.get(index, {}).get(0)
            if not links:
                return None  # an unlinked primitive does nothing
            kind = self.link_types.get((index, 0), "*")
            if kind == "COMBO" or kind == "*":
                target = self._target_spec(links[0])
                kind = target.type if target else kind
            value = InputSpec("value", kind, "required", None, {"control_after_generate": True})
            return [value], [kind]
        if node.type == "Reroute":
            wired_in = bool(self.links_to.get(index))
            wired_out = bool(self.links_from.get(index))
            if wired_in and wired_out and 0 not in self.external.get(index, set()):
                return None  # a reroute used only inside the group
            kind = node.outputs[0].type if node.outputs else "*"
            return [InputSpec(kind, kind, "required", None, {"forceInput": True})], [kind]
        if node.is_virtual:
            return None
        schema = self.schema.node(node.type)
        if schema is None:
            self.problems.append(_unknown(self.name, index, node))
            return None
        return _inputs_of(schema), [
            schema.output_type(i) or "*" for i in range(len(schema.outputs))
        ]

    def _target_spec(self, link: list[Any]) -> InputSpec | None:
        target = self.nodes[int(link[2])] if 0 <= int(link[2]) < len(self.nodes) else None
        if target is None or int(link[3]) >= len(target.inputs):
            return None
        schema = self.schema.node(target.type)
        return schema.inputs.get(target.inputs[int(link[3])].input_name) if schema else None

    def _widget(self, index: int, node: UINode, spec: InputSpec) -> GroupWidget:
        name = self._name_for(index, node, spec.name)
        return GroupWidget(name, index, spec.name, spec.has_control_widget)

    def _custom(self, index: int, section: str, key: str) -> Mapping[str, Any]:
        node_config = self.config.get(str(index))
        entries = node_config.get(section) if isinstance(node_config, Mapping) else None
        entry = entries.get(key) if isinstance(entries, Mapping) else None
        return entry if isinstance(entry, Mapping) else {}

    def _name_for(self, index: int, node: UINode, input_name: str) -> str:
        """The group's name for an inner input (duplicates get the node title as a prefix)."""
        custom = self._custom(index, "input", input_name)
        name = str(custom.get("name") or input_name)
        key = name
        if (node.type == "PrimitiveNode" and node.title) or name in self.seen:
            prefix = f"{node.title or node.type} "
            key = name = f"{prefix}{input_name}"
            if name in self.seen:
                name = f"{prefix}{self.seen[name]} {input_name}"
        self.seen[key] = self.seen.get(key, 1) + 1
        return name


def _inputs_of(schema: NodeSchema) -> list[InputSpec]:
    return [spec for spec in schema.inputs.values() if spec.section != "hidden"]


def _widget_position(node: UINode, input_name: str) -> int | None:
    for position, slot in enumerate(node.inputs):
        if slot.widget == input_name and slot.name == input_name:
            return position
    return None


def _with_id(node: UINode, index: int) -> UINode:
    return replace(node, id=node_key(index))


def _unknown(group: str, index: int, node: UINode) -> Problem:
    return Problem(
        node_id=None,
        title=node.title,
        class_type=node.type,
        input_name=None,
        kind="unknown_node_type",
        message=f"group node {group!r} contains node {index} of unknown type {node.type!r}",
        fix=f"install the custom node that provides {node.type}",
    )
