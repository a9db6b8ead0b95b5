"""Problem: one thing wrong with a workflow, a parameter or a prompt, said so a user can fix it.

Every error of this package carries a list of problems (see ``workflows.errors``); pre-flight
validation returns them directly. ``kind`` uses ComfyUI's own error type names where one exists
(``required_input_missing``, ``value_not_in_list``, ``return_type_mismatch``, ...) so problems can
be compared with a server's ``node_errors``; ``KINDS`` lists every kind and its ComfyUI name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Every kind this package reports, with the ComfyUI error type it corresponds to (None: ours only).
KINDS: dict[str, str | None] = {
    "format": None,  # not JSON, or neither API nor UI format
    "not_found": None,  # workflow file or library name not found
    "schema": None,  # node schemas could not be read
    "unknown_node_type": "invalid_prompt",  # a custom node that is not installed
    "missing_class_type": "invalid_prompt",
    "invalid_node": "invalid_prompt",  # a node entry that is not {class_type, inputs}
    "conversion": None,  # a UI graph that cannot be converted (broken group node, ...)
    "required_input_missing": "required_input_missing",
    "bad_linked_input": "bad_linked_input",
    "link_to_missing_node": "exception_during_validation",
    "link_slot_out_of_range": "exception_during_validation",
    "return_type_mismatch": "return_type_mismatch",
    "invalid_input_type": "invalid_input_type",
    "value_smaller_than_min": "value_smaller_than_min",
    "value_bigger_than_max": "value_bigger_than_max",
    "value_not_on_step": None,  # the editor would have rounded it; we refuse user values off-step
    "value_not_in_list": "value_not_in_list",
    "missing_model": "value_not_in_list",
    "missing_input_file": "custom_validation_failed",
    "prompt_no_outputs": "prompt_no_outputs",
    "unknown_parameter": None,
    "bad_address": None,
    "ambiguous_address": None,
    "bad_value": None,
    "bad_sweep": None,
    "input_file": None,
}


@dataclass(frozen=True)
class Problem:
    """One problem, located as precisely as known.

    ``node_id`` is the API-format node id (``"6"``, ``"12:3"`` inside a subgraph), ``title`` the
    node's ``_meta.title`` (or UI title), ``fix`` a concrete action when one is known.
    ``dependent_outputs`` lists the output nodes that cannot run because of this problem (ComfyUI
    still runs the other outputs of a prompt).
    """

    node_id: str | None
    title: str | None
    class_type: str | None
    input_name: str | None
    kind: str
    message: str
    fix: str | None = None
    dependent_outputs: tuple[str, ...] = field(default=())

    def where(self) -> str:
        """``node 4 (Load Checkpoint, CheckpointLoaderSimple) input ckpt_name`` or ``""``."""
        if self.node_id is None:
            return f"input {self.input_name}" if self.input_name else ""
        described = [part for part in (self.title, self.class_type) if part]
        unique = list(dict.fromkeys(described))
        text = f"node {self.node_id}"
        if unique:
            text += f" ({', '.join(unique)})"
        if self.input_name:
            text += f" input {self.input_name}"
        return text

    def __str__(self) -> str:
        where = self.where()
        text = f"{where}: {self.message}" if where else self.message
        if self.fix:
            text += f" — fix: {self.fix}"
        return text

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (for ``--json`` and job results)."""
        return {
            "node_id": self.node_id,
            "title": self.title,
            "class_type": self.class_type,
            "input_name": self.input_name,
            "kind": self.kind,
            "message": self.message,
            "fix": self.fix,
            "dependent_outputs": list(self.dependent_outputs),
        }


def general(kind: str, message: str, fix: str | None = None) -> Problem:
    """A problem that belongs to no node (a file, a parameter, the prompt as a whole)."""
    return Problem(None, None, None, None, kind, message, fix)


@dataclass(frozen=True)
class Target:
    """Where a value goes: one input of one node of an API prompt."""

    node_id: str
    input_name: str
    title: str | None = None
    class_type: str | None = None

    def problem(self, kind: str, message: str, fix: str | None = None) -> Problem:
        """A problem located at this input."""
        return Problem(
            self.node_id, self.title, self.class_type, self.input_name, kind, message, fix
        )

    def __str__(self) -> str:
        return f"{self.node_id}.{self.input_name}"
