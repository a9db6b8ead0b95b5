"""Checks of a prompt's shape that need no node schemas: node ids, link cycles, JSON values.

- A node id becomes part of a storage key (``<job_id>/<node_id>_<index>_<file>``): one with
  ``/``, a backslash, a control character, or that is ``.``/``..`` passed pre-flight, ran on the
  GPU and then failed storing its output (``UnsafeKey``). Refused here, before queueing.
- A cycle of links (``3 → 30 → 3``) is rejected by ComfyUI only once queued; found here, naming
  the nodes in it.
- Every input value must travel as JSON (``jsonsafe.json_problem``): no NaN/Infinity, no lone
  surrogates (non-UTF-8 bytes from a command line), no absurd integers or nesting.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from comfyfarm.workflows.jsonsafe import is_plain_json, json_problem
from comfyfarm.workflows.problems import Problem, Target, general

#: Longest node id accepted (ComfyUI's own are short numbers, ``12:5`` inside subgraphs).
MAX_NODE_ID = 128
_UNSAFE_ID = re.compile(r"[/\\\x00-\x1f\x7f]")


def structure_problems(prompt: Mapping[str, Any]) -> list[Problem]:
    """Unsafe node ids, cycles and values that cannot travel as JSON, each naming its node."""
    problems = [p for node_id in prompt if (p := _node_id_problem(node_id)) is not None]
    plain = is_plain_json(prompt)  # the common case: no value needs a closer look
    for node_id, node in () if plain else prompt.items():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        if not isinstance(inputs, dict):
            continue
        title = _title(node)
        class_type = node.get("class_type") if isinstance(node.get("class_type"), str) else None
        for name, value in inputs.items():
            found = json_problem(value)
            if found is not None:
                where, reason = found
                target = Target(str(node_id), str(name), title, class_type)
                at = f" (at {where})" if where else ""
                problems.append(target.problem("invalid_input_type", reason + at))
    cycle = find_cycle(prompt)
    if cycle is not None:
        chain = " → ".join([*cycle, cycle[0]])
        problems.append(
            general(
                "dependency_cycle",
                f"nodes {chain} form a cycle of links; ComfyUI cannot run it",
                "remove one of these links",
            )
        )
    return problems


def _node_id_problem(node_id: object) -> Problem | None:
    text = str(node_id)
    if not text or len(text) > MAX_NODE_ID or text in (".", "..") or _UNSAFE_ID.search(text):
        return general(
            "bad_node_id",
            f"node id {text[:MAX_NODE_ID]!r} cannot name the node's outputs in storage",
            f"use ids without '/', '\\' or control characters, at most {MAX_NODE_ID} characters "
            "(ComfyUI's own ids are numbers)",
        )
    return None


def find_cycle(prompt: Mapping[str, Any]) -> list[str] | None:
    """The node ids of one cycle of links (in link order), or None. Iterative depth-first."""
    links = {str(node_id): _sources(node, prompt) for node_id, node in prompt.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in links:
        if state.get(start):
            continue
        path: list[str] = []
        stack: list[tuple[str, list[str]]] = [(start, list(links[start]))]
        state[start] = 1
        path.append(start)
        while stack:
            node, pending = stack[-1]
            if not pending:
                stack.pop()
                path.pop()
                state[node] = 2
                continue
            nxt = pending.pop()
            if state.get(nxt) == 1:
                return path[path.index(nxt) :][::-1]
            if not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append((nxt, list(links.get(nxt, ()))))
    return None


def _sources(node: Any, prompt: Mapping[str, Any]) -> list[str]:
    inputs = node.get("inputs") if isinstance(node, dict) else None
    if not isinstance(inputs, dict):
        return []
    return [
        value[0]
        for value in inputs.values()
        if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
        and value[0] in prompt
    ]  # fmt: skip


def _title(node: Any) -> str | None:
    meta = node.get("_meta") if isinstance(node, dict) else None
    title = meta.get("title") if isinstance(meta, dict) else None
    return title if isinstance(title, str) else None
