"""UIGraph: the editor's saved graph (``nodes``, ``links``) read into typed nodes, slots and links.

Tolerates what real files contain: node ids as numbers or strings, links as arrays
(``[id, origin_id, origin_slot, target_id, target_slot, type]``) or objects
(``{id, origin_id, origin_slot, target_id, target_slot, type}``), ``links`` as a list or a dict,
missing ``inputs``/``outputs``/``mode``, and ``widgets_values`` as a list, a dict or null; node
types the editor renames on load (``LEGACY_TYPES``) are renamed here too. The same
reader serves the root graph, subgraph definitions (``definitions.subgraphs``) and legacy group
node definitions (``extra.groupNodes``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# LiteGraph node modes.
MODE_ALWAYS = 0
MODE_NEVER = 2  # "muted"
MODE_BYPASS = 4

# Ids of the input and output pseudo-nodes inside a subgraph definition.
SUBGRAPH_INPUT_ID = "-10"
SUBGRAPH_OUTPUT_ID = "-20"

# Frontend-only nodes: never sent to the server. Reroutes pass their input through, a
# PrimitiveNode becomes a literal value and a GetNode the source of the SetNode of its name;
# the rest (notes, and popular packs' organising nodes: KJNodes, rgthree) simply vanish.
PASS_THROUGH_TYPES = frozenset({"Reroute", "Reroute (rgthree)"})
SET_NODE, GET_NODE = "SetNode", "GetNode"  # KJNodes: a named wire, set once, read anywhere
VIRTUAL_TYPES = frozenset(
    {"PrimitiveNode", "Note", "MarkdownNote", SET_NODE, GET_NODE, *PASS_THROUGH_TYPES}
    | {
        f"{name} (rgthree)"
        for name in (
            "Fast Muter", "Fast Bypasser", "Fast Groups Muter", "Fast Groups Bypasser",
            "Fast Actions Button", "Mute / Bypass Relay", "Mute / Bypass Repeater",
            "Node Collector", "Random Unmuter", "Label", "Bookmark",
        )
    }
)  # fmt: skip
GROUP_NODE_PREFIXES = ("workflow>", "workflow/")
# Types the editor renames when it loads a workflow (app.loadGraphData), so they export renamed.
LEGACY_TYPES = {
    "T2IAdapterLoader": "ControlNetLoader",
    "ConditioningAverage ": "ConditioningAverage",
    "SDV_img2vid_Conditioning": "SVD_img2vid_Conditioning",
}


def node_key(value: Any) -> str:
    """Node and link ids as strings: ``5``, ``5.0`` and ``"5"`` are the same node."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class InputSlot:
    """One entry of a node's ``inputs``: a socket, possibly a widget converted to an input."""

    name: str
    type: str
    link: str | None
    widget: str | None  # the widget this socket stands for, when it is a widget input

    @property
    def input_name(self) -> str:
        """The API input this socket fills (a widget socket fills its widget)."""
        return self.widget or self.name


@dataclass(frozen=True)
class OutputSlot:
    name: str
    type: str
    widget: str | None  # PrimitiveNode outputs name the widget they feed


@dataclass(frozen=True)
class UINode:
    id: str
    type: str
    mode: int
    title: str | None
    inputs: tuple[InputSlot, ...]
    outputs: tuple[OutputSlot, ...]
    widgets_values: list[Any] | dict[str, Any] | None
    properties: Mapping[str, Any]

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> UINode:
        inputs = tuple(_input_slot(entry) for entry in _list(raw.get("inputs")))
        outputs = tuple(_output_slot(entry) for entry in _list(raw.get("outputs")))
        values = raw.get("widgets_values")
        if not isinstance(values, (list, dict)):
            values = None
        mode = raw.get("mode", MODE_ALWAYS)
        title = raw.get("title")
        properties = raw.get("properties")
        return cls(
            id=node_key(raw.get("id")),
            type=_type_of(raw.get("type")),
            mode=mode if isinstance(mode, int) and not isinstance(mode, bool) else MODE_ALWAYS,
            title=title if isinstance(title, str) and title else None,
            inputs=inputs,
            outputs=outputs,
            widgets_values=values,
            properties=properties if isinstance(properties, dict) else {},
        )

    @property
    def is_virtual(self) -> bool:
        return self.type in VIRTUAL_TYPES

    @property
    def wire_name(self) -> str | None:
        """The name a SetNode sets or a GetNode reads (its first widget value)."""
        values = self.widgets_values
        first = values[0] if isinstance(values, list) and values else None
        return first if isinstance(first, str) and first else None

    @property
    def is_group_node(self) -> bool:
        return self.type.startswith(GROUP_NODE_PREFIXES)

    @property
    def group_name(self) -> str:
        for prefix in GROUP_NODE_PREFIXES:
            if self.type.startswith(prefix):
                return self.type[len(prefix) :]
        return self.type


@dataclass(frozen=True)
class UILink:
    id: str
    origin_id: str
    origin_slot: int
    target_id: str
    target_slot: int
    type: str

    @classmethod
    def parse(cls, raw: Any) -> UILink | None:
        """Read an array or object link; None for entries too broken to use."""
        if isinstance(raw, (list, tuple)) and len(raw) >= 5:
            link_id, origin, origin_slot, target, target_slot = raw[:5]
            kind = raw[5] if len(raw) > 5 else "*"
        elif isinstance(raw, Mapping):
            link_id, origin = raw.get("id"), raw.get("origin_id")
            origin_slot, target = raw.get("origin_slot", 0), raw.get("target_id")
            target_slot, kind = raw.get("target_slot", 0), raw.get("type", "*")
        else:
            return None
        if link_id is None or origin is None or target is None:
            return None
        if not _is_index(origin_slot) or not _is_index(target_slot):
            return None
        return cls(
            id=node_key(link_id),
            origin_id=node_key(origin),
            origin_slot=int(origin_slot),
            target_id=node_key(target),
            target_slot=int(target_slot),
            type=_type_name(kind),
        )


@dataclass(frozen=True)
class UIGraph:
    """Nodes (in file order, as the editor exports them) and links of one graph level."""

    nodes: Mapping[str, UINode]
    links: Mapping[str, UILink]

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> UIGraph:
        parsed = [
            UINode.parse(entry) for entry in _list(raw.get("nodes")) if isinstance(entry, Mapping)
        ]
        links_raw = raw.get("links")
        entries = links_raw.values() if isinstance(links_raw, Mapping) else _list(links_raw)
        links: dict[str, UILink] = {}
        for entry in entries:
            link = UILink.parse(entry)
            if link is not None:
                links[link.id] = link
        return cls(nodes={node.id: node for node in parsed}, links=links)


def is_ui_link_list(value: Any) -> bool:
    """True for a ``links`` value as the editor writes it (list or dict, possibly empty)."""
    return isinstance(value, (list, dict))


def _type_of(value: Any) -> str:
    name = str(value or "")
    return LEGACY_TYPES.get(name, name)


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else []


def _is_index(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, float):
        return value.is_integer()
    return isinstance(value, int)


def _type_name(kind: Any) -> str:
    if isinstance(kind, str):
        return kind
    if isinstance(kind, (list, tuple)):
        return "COMBO"
    return "*"


def _input_slot(entry: Any) -> InputSlot:
    entry = entry if isinstance(entry, Mapping) else {}
    widget = entry.get("widget")
    widget_name = widget.get("name") if isinstance(widget, Mapping) else None
    link = entry.get("link")
    return InputSlot(
        name=str(entry.get("name", "")),
        type=_type_name(entry.get("type", "*")),
        link=None if link is None else node_key(link),
        widget=str(widget_name) if widget_name else None,
    )


def _output_slot(entry: Any) -> OutputSlot:
    entry = entry if isinstance(entry, Mapping) else {}
    widget = entry.get("widget")
    widget_name = widget.get("name") if isinstance(widget, Mapping) else None
    return OutputSlot(
        name=str(entry.get("name", "")),
        type=_type_name(entry.get("type", "*")),
        widget=str(widget_name) if widget_name else None,
    )
