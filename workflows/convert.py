"""UI format → API format, the way the editor's "Export (API)" does it, driven by node schemas.

The authority is the editor itself: ``tests/workflows/editor_fixtures`` holds what the real editor
(comfyui-frontend-package 1.27.10, run headless by ``tools/editor_oracle``) exports for all 172
templates of ComfyUI 0.3.64, and the tests demand exact agreement, ``_meta`` included.

``convert_ui_to_api(ui, schema)`` flattens the graph (subgraph instances from
``definitions.subgraphs`` — inputs matched to the definition by name, with the widget values they
promote, by input (one value per definition, as the editor keeps it: ``convert_promotions``) or
through ``properties.proxyWidgets``: ``workflows.convert_subgraphs`` — and
legacy group nodes from ``extra.groupNodes`` expanded, with ids ``"<instance>:<inner>"``), then
emits every real node that is neither muted (mode 2) nor bypassed
(mode 4) nor frontend-only (Reroute, PrimitiveNode, Note, MarkdownNote, and the organising nodes
of popular packs: KJNodes' SetNode/GetNode, rgthree's reroute, muters, bypassers, labels):

- widget values by the editor's widget layout (``comfyfarm.workflows.widgets``), its own widgets
  included,
- each input socket resolved backwards (``workflows.execgraph``): through reroutes, GetNode →
  SetNode of the same name (own graph first, then the graphs around it), bypassed nodes
  (to their first input of a matching type), subgraph boundaries and promoted widgets; a
  PrimitiveNode source becomes a literal value; a muted source drops the input,
- ``_meta.title`` = the node's title, else the schema's display name, else the editor's own
  title for that class,
- finally inputs that point at nodes that were not emitted are removed.

Node types the schema source does not know, subgraph instances whose inner links name inputs
their definition lacks, and nodes whose value only a browser can make at export (webcam, 3D
viewport) are reported all at once (ConversionError), never converted by guess.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from comfyfarm.workflows.convert_groups import GroupNodeDef, GroupScope
from comfyfarm.workflows.convert_promotions import shared_values
from comfyfarm.workflows.convert_subgraphs import (
    SUBGRAPH_INPUT_TARGET,
    SubgraphMismatch,
    configured_instance,
    definition_inputs,
    feeds_widget,
    promoted_slots,
    proxied_inputs,
    proxy_widgets,
    subgraph_definitions,
)
from comfyfarm.workflows.convert_titles import editor_title
from comfyfarm.workflows.errors import ConversionError
from comfyfarm.workflows.execgraph import (
    ExecNode,
    GraphScope,
    LinkRef,
    Literal,
    Resolved,
    Scope,
    bypass_slot,
    primitive_value,
)
from comfyfarm.workflows.problems import Problem
from comfyfarm.workflows.schema import SchemaSource
from comfyfarm.workflows.uigraph import (
    GET_NODE,
    MODE_BYPASS,
    MODE_NEVER,
    PASS_THROUGH_TYPES,
    SET_NODE,
    UIGraph,
    UINode,
)
from comfyfarm.workflows.widgets import browser_captured, widget_inputs, wrap_value

MAX_DEPTH = 32  # subgraphs inside subgraphs; deeper means a definition that contains itself


def convert_ui_to_api(ui: Mapping[str, Any], schema: SchemaSource) -> dict[str, Any]:
    """The API-format prompt of a UI-format workflow (raises ConversionError)."""
    return Converter(ui, schema).convert()


class Converter:
    """One conversion: the flattened nodes, the resolver over them, and the emitted prompt."""

    def __init__(self, ui: Mapping[str, Any], schema: SchemaSource) -> None:
        self.ui = ui
        self.schema = schema
        self.nodes: dict[str, ExecNode] = {}
        self.problems: list[Problem] = []
        self.subgraphs = subgraph_definitions(ui)
        extra = ui.get("extra") if isinstance(ui.get("extra"), Mapping) else {}
        groups = extra.get("groupNodes") if isinstance(extra, Mapping) else None
        self.group_raw: Mapping[str, Any] = groups if isinstance(groups, Mapping) else {}
        self.group_defs: dict[str, GroupNodeDef] = {}
        self.unset_getters: set[str] = set()
        # Widget values a subgraph instance promotes (proxyWidgets) onto its inner nodes, by the
        # inner node's exec id; taken when that node is added.
        self.proxied: dict[str, dict[str, Any]] = {}

    # -- flattening -------------------------------------------------------------------------

    def convert(self) -> dict[str, Any]:
        self.shared, problems = shared_values(self.ui, self.subgraphs, self.schema, self._is_widget)
        self.problems.extend(problems)
        root = GraphScope(UIGraph.parse(self.ui))
        for node in root.graph.nodes.values():
            self._add(node, root, node.mode, depth=0, path=())
        prompt = self._emit()
        if self.problems:
            raise ConversionError(problems=self.problems)
        return prompt

    def _add(
        self, node: UINode, scope: Scope, mode: int, *, depth: int, path: tuple[str, ...]
    ) -> None:
        exec_id = scope.prefix + node.id
        en = ExecNode(exec_id=exec_id, node=node, scope=scope, mode=mode)
        en.widget_overrides.update(self.proxied.pop(exec_id, {}))
        self.nodes[exec_id] = en
        inner_mode = MODE_NEVER if mode in (MODE_NEVER, MODE_BYPASS) else None
        if node.type in self.subgraphs:
            self._expand_subgraph(en, inner_mode, depth=depth, path=path)
        elif node.is_group_node and node.group_name in self.group_raw:
            self._expand_group(en, inner_mode)

    def _expand_subgraph(
        self, en: ExecNode, inner_mode: int | None, *, depth: int, path: tuple[str, ...]
    ) -> None:
        node = en.node
        if depth >= MAX_DEPTH or node.type in path:
            self.problems.append(
                _problem(en, "conversion", f"subgraph {node.type!r} contains itself")
            )
            return
        definition = self.subgraphs[node.type]
        graph = UIGraph.parse(definition)
        try:
            node = en.node = configured_instance(node, definition, graph)
        except SubgraphMismatch as exc:
            fix = "open the workflow in the editor and save it again"
            self.problems.append(_problem(en, "conversion", str(exc), fix))
            return
        scope = GraphScope(graph, prefix=en.exec_id + ":", instance=en)
        en.inner = scope
        proxies = proxy_widgets(node, en.widget_overrides)
        if proxies is None:  # one value per definition and input, as the editor keeps it
            slots = promoted_slots(node, definition, graph, self._is_widget)
            keys = {slot: (node.type, node.inputs[slot].name) for slot in slots}
            en.promoted = {slot: self.shared[k] for slot, k in keys.items() if k in self.shared}
        else:
            en.promoted = proxied_inputs(node, proxies)
        for target, name, value in proxies or ():
            if target != SUBGRAPH_INPUT_TARGET:
                self.proxied.setdefault(scope.prefix + target, {})[name] = value
        if en.node.title is None and isinstance(definition.get("name"), str):
            en.node = _titled(node, definition["name"])
        for inner in scope.graph.nodes.values():
            mode = inner.mode if inner_mode is None else inner_mode
            self._add(inner, scope, mode, depth=depth + 1, path=(*path, node.type))

    def _is_widget(self, node: UINode, input_name: str, seen: frozenset[str] = frozenset()) -> bool:
        """Whether ``input_name`` of ``node`` is a widget in the editor (so it can be promoted)."""
        definition = self.subgraphs.get(node.type)
        if definition is not None:  # a nested instance: a widget when it promotes one
            entry = next(
                (e for e in definition_inputs(definition) if e.get("name") == input_name), None
            )
            if entry is None or node.type in seen:
                return False
            inner = seen | {node.type}
            return feeds_widget(
                entry, UIGraph.parse(definition), lambda n, name: self._is_widget(n, name, inner)
            )
        node_schema = self.schema.node(node.type)
        if node_schema is None:  # unknown type: reported when emitted; trust the file
            return any(s.input_name == input_name and s.widget for s in node.inputs)
        spec = node_schema.inputs.get(input_name)
        return spec is not None and spec.is_widget

    def _expand_group(self, en: ExecNode, inner_mode: int | None) -> None:
        name = en.node.group_name
        definition = self.group_defs.get(name)
        if definition is None:
            try:
                definition = GroupNodeDef.build(name, self.group_raw[name], self.schema)
            except ConversionError as exc:
                self.problems.extend(
                    _problem(en, p.kind, p.message, p.fix, class_type=p.class_type)
                    for p in exc.problems
                )
                return
            self.group_defs[name] = definition
        try:
            en.node = definition.configured(en.node)
        except ConversionError as exc:
            self.problems.extend(
                _problem(en, p.kind, p.message, p.fix, class_type=p.class_type)
                for p in exc.problems
            )
            return
        scope = GroupScope(definition, en)
        en.inner = scope
        values = definition.instance_values(en.node.widgets_values)
        by_name = {w.name: w for w in definition.widgets}
        for inner in definition.nodes:
            mode = inner.mode if inner_mode is None else inner_mode
            child = ExecNode(scope.prefix + inner.id, inner, scope, mode)
            child.widget_overrides = dict(values.get(int(inner.id), {}))
            self.nodes[child.exec_id] = child
        # Group widgets converted to inputs on the outer graph feed the inner widget they stand for.
        for slot_index, slot in enumerate(en.node.inputs):
            widget = by_name.get(slot.widget or "")
            target = self.nodes.get(scope.prefix + str(widget.index)) if widget else None
            if widget is not None and target is not None and slot.link is not None:
                target.extra_sources[widget.input_name] = (en, slot_index)

    # -- resolution (the Resolver protocol) -------------------------------------------------

    def node(self, exec_id: str) -> ExecNode | None:
        return self.nodes.get(exec_id)

    def resolve_input(
        self, en: ExecNode, slot: int, visited: set[str], type_: str | None = None
    ) -> Resolved | None:
        if not 0 <= slot < len(en.node.inputs):
            return None
        _enter(visited, f"{en.exec_id}[I]{slot}", en)
        return en.scope.input_source(self, en, slot, type_ or en.node.inputs[slot].type, visited)

    def resolve_output(
        self, en: ExecNode, slot: int, type_: str, visited: set[str]
    ) -> Resolved | None:
        _enter(visited, f"{en.exec_id}[O]{slot}", en)
        if en.mode == MODE_BYPASS:
            index = bypass_slot(en.node, slot, type_)
            return None if index < 0 else self.resolve_input(en, index, visited)
        if en.mode == MODE_NEVER:
            return None
        if en.inner is not None:
            return en.inner.output_source(self, slot, type_, visited)
        if en.node.type in PASS_THROUGH_TYPES:
            return self.resolve_input(en, 0, visited, type_)
        if en.node.type == GET_NODE:
            setter = self._setter(en)
            return None if setter is None else self.resolve_input(setter, 0, visited, type_)
        if en.node.type == "PrimitiveNode":
            return primitive_value(en.node, en.widget_overrides)
        if en.node.is_virtual or en.node.is_group_node:
            return None
        return LinkRef(en.exec_id, slot)

    def _setter(self, getter: ExecNode) -> ExecNode | None:
        """The SetNode a GetNode reads: same name, in its own graph or else the nearest one
        around it (KJNodes' rule); reported as a problem when there is none."""
        name = getter.node.wire_name
        scope: Scope | None = getter.scope
        while name is not None and scope is not None:
            for candidate in self.nodes.values():
                node = candidate.node
                if candidate.scope is scope and node.type == SET_NODE and node.wire_name == name:
                    return candidate
            scope = scope.instance.scope if scope.instance is not None else None
        if getter.exec_id not in self.unset_getters:  # one report however many inputs it feeds
            self.unset_getters.add(getter.exec_id)
            message = f"GetNode reads {name!r}, but no SetNode sets it" if name else "no name"
            fix = "add the SetNode, or pick a name that a SetNode sets"
            self.problems.append(_problem(getter, "conversion", message, fix))
        return None

    def instance_input(self, instance: ExecNode, slot: int, visited: set[str]) -> Resolved | None:
        """Input ``slot`` of a subgraph instance: its link, else its promoted widget value."""
        if not 0 <= slot < len(instance.node.inputs):
            return None
        if instance.node.inputs[slot].link is None:
            if slot in instance.promoted:
                return Literal(instance.promoted[slot])
            return None
        return self.resolve_input(instance, slot, visited)

    # -- emission ---------------------------------------------------------------------------

    def _emit(self) -> dict[str, Any]:
        prompt: dict[str, Any] = {}
        for en in self.nodes.values():
            node = en.node
            if en.inner is not None or node.is_virtual or en.mode in (MODE_NEVER, MODE_BYPASS):
                continue
            if node.is_group_node:  # not expanded: no definition, or a problem already said
                if node.group_name not in self.group_raw:
                    self.problems.append(_missing_group(en))
                continue
            node_schema = self.schema.node(node.type)
            if node_schema is None:
                self.problems.append(self._unknown(en))
                continue
            captured = browser_captured(node.type)
            if captured is not None:
                self.problems.append(self._captured(en, captured))
                continue
            inputs = widget_inputs(node.widgets_values, node_schema, en.widget_overrides)
            for index, slot in enumerate(node.inputs):
                self._set(inputs, slot.input_name, self.resolve_input(en, index, set()))
            for name, (source, index) in en.extra_sources.items():
                self._set(inputs, name, self.resolve_input(source, index, set()))
            prompt[en.exec_id] = {
                "inputs": inputs,
                "class_type": node.type,
                "_meta": {"title": node.title or editor_title(node_schema)},
            }
        for entry in prompt.values():
            inputs = entry["inputs"]
            for name in [n for n, v in inputs.items() if _is_link(v) and v[0] not in prompt]:
                del inputs[name]
        return prompt

    @staticmethod
    def _set(inputs: dict[str, Any], name: str, resolved: Resolved | None) -> None:
        if isinstance(resolved, LinkRef):
            inputs[name] = [resolved.node_id, resolved.slot]
        elif isinstance(resolved, Literal):
            inputs[name] = wrap_value(resolved.value)

    @staticmethod
    def _captured(en: ExecNode, widget: str) -> Problem:
        message = f"only the editor can export this node: its widget {widget} is made at export"
        fix = "export the workflow from the editor (Export (API)), or remove or bypass this node"
        return _problem(en, "conversion", message, fix)

    def _unknown(self, en: ExecNode) -> Problem:
        close = difflib.get_close_matches(en.node.type, self.schema.class_types, n=3, cutoff=0.75)
        fix = f"install the custom node that provides {en.node.type}"
        if close:
            fix = f"did you mean {' or '.join(repr(c) for c in close)}? otherwise {fix}"
        message = f"node type {en.node.type!r} is not installed (unknown to {self.schema.origin})"
        return _problem(en, "unknown_node_type", message, fix)


def _titled(node: UINode, title: str) -> UINode:
    return replace(node, title=title)


def _enter(visited: set[str], key: str, en: ExecNode) -> None:
    if key in visited:
        raise ConversionError(
            problems=[_problem(en, "conversion", "links form a cycle through this node")]
        )
    visited.add(key)


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)


def _missing_group(en: ExecNode) -> Problem:
    name = en.node.group_name
    message = f"group node {name!r} has no definition in extra.groupNodes"
    return _problem(en, "conversion", message, "re-save the workflow from the editor")


def _problem(
    en: ExecNode, kind: str, message: str, fix: str | None = None, *, class_type: str | None = None
) -> Problem:
    return Problem(en.exec_id, en.node.title, class_type or en.node.type, None, kind, message, fix)
