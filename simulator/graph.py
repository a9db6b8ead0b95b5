"""The prompt graph: cache signatures of nodes and ComfyUI's execution order.

``ExecutionList`` mirrors ComfyUI's ``comfy_execution.graph.ExecutionList``: nodes are added
depth-first from the output nodes (cached upstream nodes are not added), and among the ready
nodes an output node is picked first, then a node feeding an output, then a node two steps
from an output, else the first ready one. The order of events a client sees depends on it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any


class DependencyCycle(Exception):
    """Raised when no node is ready although some are pending (validation normally prevents it)."""


def is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], (int, float))
    )


def node_signatures(
    prompt: dict[str, Any], is_changed: Callable[[str, dict[str, Any]], object]
) -> dict[str, str]:
    """A cache key per node: its class, inputs and the keys of everything upstream.

    Two nodes with equal keys produce equal outputs, so a re-submitted identical prompt (even
    with other node ids) is served from the cache, as in ComfyUI's CLASSIC cache.
    """
    keys: dict[str, str] = {}
    visiting: set[str] = set()

    def key(node_id: str) -> str:
        if node_id in keys:
            return keys[node_id]
        if node_id in visiting:  # only possible in nodes that are never executed
            return f"cycle:{node_id}"
        visiting.add(node_id)
        node = prompt[node_id]
        class_type = node.get("class_type")
        inputs = node.get("inputs") or {}
        parts: list[Any] = [class_type, repr(is_changed(str(class_type), inputs))]
        for name in sorted(inputs):
            value = inputs[name]
            if is_link(value) and value[0] in prompt:
                parts.append([name, "link", key(value[0]), value[1]])
            else:
                parts.append([name, value])
        visiting.discard(node_id)
        text = json.dumps(parts, sort_keys=True, default=repr)
        keys[node_id] = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()
        return keys[node_id]

    for node_id in prompt:
        key(node_id)
    return keys


class ExecutionList:
    """The nodes still to run for one prompt and which of them are ready."""

    def __init__(
        self,
        prompt: dict[str, Any],
        is_output: Callable[[str], bool],
        is_cached: Callable[[str], bool],
    ) -> None:
        self.prompt = prompt
        self._is_output = is_output
        self._is_cached = is_cached
        self.pending: dict[str, None] = {}
        self.block_count: dict[str, int] = {}
        self.blocking: dict[str, dict[str, set[Any]]] = {}

    def add_node(self, node_id: str) -> None:
        stack = [node_id]
        links: list[tuple[str, Any, str]] = []
        while stack:
            unique_id = stack.pop()
            if unique_id in self.pending:
                continue
            self.pending[unique_id] = None
            self.block_count[unique_id] = 0
            self.blocking[unique_id] = {}
            for value in self.prompt[unique_id]["inputs"].values():
                if is_link(value):
                    if not self._is_cached(value[0]):
                        stack.append(value[0])
                    links.append((value[0], value[1], unique_id))
        for from_id, socket, to_id in links:
            self._add_strong_link(from_id, socket, to_id)

    def _add_strong_link(self, from_id: str, socket: Any, to_id: str) -> None:
        if self._is_cached(from_id):
            return
        self.add_node(from_id)
        if to_id not in self.blocking[from_id]:
            self.blocking[from_id][to_id] = set()
            self.block_count[to_id] += 1
        self.blocking[from_id][to_id].add(socket)

    def is_empty(self) -> bool:
        return not self.pending

    def stage(self) -> str:
        """The next node to execute."""
        ready = [n for n in self.pending if self.block_count[n] == 0]
        if not ready:
            raise DependencyCycle(f"Dependency cycle detected among nodes {list(self.pending)}")
        return self._pick(ready)

    def _node_is_output(self, node_id: str) -> bool:
        return self._is_output(str(self.prompt[node_id]["class_type"]))

    def _pick(self, ready: list[str]) -> str:
        for node_id in ready:
            if self._node_is_output(node_id):
                return node_id
        for node_id in ready:
            if any(self._node_is_output(b) for b in self.blocking[node_id]):
                return node_id
        for node_id in ready:
            for blocked in self.blocking[node_id]:
                if any(self._node_is_output(b) for b in self.blocking[blocked]):
                    return node_id
        return ready[0]

    def complete(self, node_id: str) -> None:
        del self.pending[node_id]
        for blocked in self.blocking[node_id]:
            self.block_count[blocked] -= 1
        del self.blocking[node_id]

    def planned(self) -> list[str]:
        """Every node that will run (not cached), in insertion order."""
        return list(self.pending)
