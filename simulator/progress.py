"""Per-node progress of one prompt and the ``progress_state`` messages it produces.

Mirrors ComfyUI's ``comfy_execution.progress``: entries are created when a node is first
touched, every change sends the state of all touched nodes, and the message goes to the
prompt's client (to every socket when the prompt has no client id). Starting a node sets
0.0/1.0 (floats), progress hooks set the values they are given, finishing sets value = max;
a cached node is finished without being started, so it shows 1/1 as ints.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Send = Callable[[str, Any, "str | None"], None]


class ProgressRegistry:
    def __init__(self, prompt_id: str, client_id: str | None, send: Send) -> None:
        self.prompt_id = prompt_id
        self.client_id = client_id
        self._send = send
        self.nodes: dict[str, dict[str, Any]] = {}

    def _entry(self, node_id: str) -> dict[str, Any]:
        entry = self.nodes.get(node_id)
        if entry is None:
            entry = self.nodes[node_id] = {"state": "pending", "value": 0, "max": 1}
        return entry

    def start(self, node_id: str) -> None:
        self._entry(node_id).update(state="running", value=0.0, max=1.0)
        self._publish()

    def update(self, node_id: str, value: float, maximum: float) -> None:
        self._entry(node_id).update(state="running", value=value, max=maximum)
        self._publish()

    def finish(self, node_id: str) -> None:
        entry = self._entry(node_id)
        entry.update(state="finished", value=entry["max"])
        self._publish()

    def _publish(self) -> None:
        nodes = {
            node_id: {
                "value": entry["value"],
                "max": entry["max"],
                "state": entry["state"],
                "node_id": node_id,
                "prompt_id": self.prompt_id,
                "display_node_id": node_id,
                "parent_node_id": None,
                "real_node_id": node_id,
            }
            for node_id, entry in self.nodes.items()
            if entry["state"] != "pending"
        }
        self._send("progress_state", {"prompt_id": self.prompt_id, "nodes": nodes}, self.client_id)
