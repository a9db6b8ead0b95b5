"""Pre-flight validation: everything ComfyUI's ``POST /prompt`` would reject, found before queueing.

``validate_prompt(prompt, schema)`` mirrors ComfyUI's ``validate_prompt``/``validate_inputs``:
unknown node types (a missing custom node), nodes without ``class_type``, missing required inputs,
links to missing nodes or to output slots that do not exist, link type mismatches (``*`` matches
anything, comma-separated type lists match when they overlap), values that do not convert to the
input's type, values out of ``min``/``max``, values not in a combo list — model files (the combo
lists of loaders are the server's model lists) and input images are named as such — and a prompt
without an output node. Checks that need no schemas (node ids unsafe as storage keys, cycles of
links, values that cannot travel as JSON) are ``graphcheck.structure_problems``, included here.

Unlike ComfyUI, which validates only nodes that feed an output and then runs the outputs that
validated, every problem is reported; each carries ``dependent_outputs``, the output nodes it
would stop. Step grids are not checked here: ComfyUI does not check them either.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping
from typing import Any

from comfyfarm.workflows.coerce import combo_problem
from comfyfarm.workflows.graphcheck import structure_problems
from comfyfarm.workflows.problems import Problem, Target, general
from comfyfarm.workflows.schema import InputSpec, NodeSchema, SchemaSource, types_match


def validate_prompt(
    prompt: Mapping[str, Any],
    schema: SchemaSource,
    *,
    uploads: Collection[tuple[str, str]] = (),
) -> list[Problem]:
    """Every problem of an API-format prompt; ``[]`` means ComfyUI will accept it.

    ``uploads`` names ``(node_id, input_name)`` inputs the worker fills by uploading a file, so
    their current value need not be in the server's list.
    """
    if not isinstance(prompt, Mapping) or not prompt:
        return [
            general("prompt_no_outputs", "the prompt has no nodes", "add nodes and an output node")
        ]
    problems: list[Problem] = structure_problems(prompt)
    outputs: list[str] = []
    all_known = True
    for node_id, node in prompt.items():
        node_schema = _node_schema(str(node_id), node, schema, problems)
        if node_schema is None:
            all_known = False
            continue
        if node_schema.output_node:
            outputs.append(str(node_id))
        inputs = node.get("inputs", {})
        for name, spec in node_schema.inputs.items():
            if spec.section == "hidden":
                continue
            if name in inputs and _accepted(inputs[name], spec, prompt, schema):
                continue  # the common case, decided without building a Target
            target = Target(str(node_id), name, _title(node), node_schema.class_type)
            if name not in inputs:
                if spec.section == "required":
                    problems.append(_missing(target, spec))
                continue
            if (str(node_id), name) in uploads:
                continue
            problem = check_input(inputs[name], spec, target, prompt, schema)
            if problem is not None:
                problems.append(problem)
    if all_known and not outputs:
        problems.append(
            general(
                "prompt_no_outputs",
                "the prompt has no output node, so ComfyUI would run nothing",
                "add an output node such as SaveImage or PreviewImage",
            )
        )
    return _with_dependents(problems, prompt, outputs)


_URL_PREFIXES = ("https://", "http://")


def _accepted(value: Any, spec: InputSpec, prompt: Mapping[str, Any], schema: SchemaSource) -> bool:
    """True when ``check_input`` would find nothing wrong, decided cheaply for the common
    cases (a link of the right type, a number in range, a listed choice, free text). False
    means "check it fully": never a problem by itself. Validating a submission is on the
    gateway's hot path, and most inputs of most prompts are fine."""
    kind = type(value)
    if kind is list:
        if len(value) != 2:
            return False
        origin_id, slot = value
        if type(origin_id) is not str or type(slot) is not int:
            return False
        origin = prompt.get(origin_id)
        class_type = origin.get("class_type") if type(origin) is dict else None
        origin_schema = schema.node(class_type) if type(class_type) is str else None
        received = origin_schema.output_type(slot) if origin_schema is not None else None
        if received is None:
            return False
        if spec.type == "COMBO":
            return received in ("COMBO", "STRING") or types_match(received, "*")
        return types_match(received, spec.type)
    if not spec.is_widget:
        return False
    expected = spec.type
    if expected == "INT" and kind is int or expected == "FLOAT" and kind in (int, float):
        try:
            number = value if expected == "INT" else float(value)  # as the full check compares
        except OverflowError:
            return False
        low, high = spec.minimum, spec.maximum
        return (low is None or number >= low) and (high is None or number <= high)
    if expected == "COMBO":
        choices = spec.choices
        if choices is None or (kind is str and value.startswith(_URL_PREFIXES)):
            return False
        try:
            return value in choices
        except TypeError:  # unhashable: not a choice
            return False
    return expected == "STRING" or expected == "BOOLEAN"


def check_input(
    value: Any,
    spec: InputSpec,
    target: Target,
    prompt: Mapping[str, Any],
    schema: SchemaSource,
) -> Problem | None:
    """The problem with one input value or link, or None."""
    if isinstance(value, list):
        return _check_link(value, spec, target, prompt, schema)
    if isinstance(value, dict) and "__value__" in value:
        return None  # an array value; ComfyUI unwraps it
    if not spec.is_widget:
        if spec.type == "*":
            return None
        return target.problem(
            "invalid_input_type",
            f"expects a link from a {spec.type} output, got the value {value!r}",
            f"connect a node that outputs {spec.type}",
        )
    if spec.type in ("INT", "FLOAT"):
        return _check_number(value, spec, target)
    if spec.type == "COMBO":
        problem = combo_problem(value, spec, target, schema)
        if problem is not None and spec.is_upload and problem.kind != "missing_model":
            return target.problem(
                "missing_input_file",
                f"{value!r} is not in ComfyUI's input folder",
                "pass a local file as the parameter (the worker uploads it) "
                "or upload it to ComfyUI first",
            )
        return problem
    return None  # STRING and BOOLEAN take anything (ComfyUI converts with str() / bool())


def _check_number(value: Any, spec: InputSpec, target: Target) -> Problem | None:
    kind = int if spec.type == "INT" else float
    try:
        number = kind(value)
    except (TypeError, ValueError) as exc:
        return target.problem(
            "invalid_input_type",
            f"{value!r} is not {'an integer' if kind is int else 'a number'} ({exc})",
            f"use a number between {spec.minimum} and {spec.maximum}",
        )
    if spec.minimum is not None and number < spec.minimum:
        return target.problem(
            "value_smaller_than_min",
            f"{number} is smaller than the minimum {spec.minimum}",
            f"use {spec.minimum} or more",
        )
    if spec.maximum is not None and number > spec.maximum:
        return target.problem(
            "value_bigger_than_max",
            f"{number} is bigger than the maximum {spec.maximum}",
            f"use {spec.maximum} or less",
        )
    return None


def _check_link(
    value: list[Any],
    spec: InputSpec,
    target: Target,
    prompt: Mapping[str, Any],
    schema: SchemaSource,
) -> Problem | None:
    if len(value) != 2 or isinstance(value[1], bool) or not isinstance(value[1], int):
        return target.problem(
            "bad_linked_input",
            f"{value!r} is neither a link [node_id, slot] nor a value",
            'write array values as {"__value__": [...]}',
        )
    origin_id, slot = value
    if not isinstance(origin_id, str):
        return target.problem(
            "bad_linked_input",
            f"links use string node ids, got {origin_id!r}",
            f'write ["{origin_id}", {slot}]',
        )
    origin = prompt.get(origin_id)
    if origin is None:
        return target.problem(
            "link_to_missing_node",
            f"is linked to node {origin_id}, which is not in the prompt",
            "link it to an existing node",
        )
    origin_schema = schema.node(str(origin.get("class_type"))) if isinstance(origin, dict) else None
    if origin_schema is None:
        return None  # reported on the origin node itself
    received = origin_schema.output_type(slot)
    if received is None:
        names = ", ".join(origin_schema.output_names) or "none"
        return target.problem(
            "link_slot_out_of_range",
            f"is linked to output {slot} of node {origin_id} ({origin_schema.class_type}), "
            f"which has {len(origin_schema.outputs)} output(s): {names}",
            "link it to an output that exists",
        )
    if spec.type == "COMBO":
        compatible = received in ("COMBO", "STRING") or types_match(received, "*")
    else:
        compatible = types_match(received, spec.type)
    if compatible:
        return None
    return target.problem(
        "return_type_mismatch",
        f"expects {spec.type} but node {origin_id} ({origin_schema.class_type}) "
        f"output {slot} gives {received}",
        f"link it to a {spec.type} output",
    )


def _node_schema(
    node_id: str, node: Any, schema: SchemaSource, problems: list[Problem]
) -> NodeSchema | None:
    if not isinstance(node, dict) or not isinstance(node.get("inputs", {}), dict):
        problems.append(
            Problem(node_id, None, None, None, "invalid_node", "is not {class_type, inputs}")
        )
        return None
    class_type = node.get("class_type")
    if not isinstance(class_type, str) or not class_type:
        problems.append(
            Problem(
                node_id,
                _title(node),
                None,
                None,
                "missing_class_type",
                "has no class_type",
                "every node needs the class_type of the node it runs",
            )
        )
        return None
    node_schema = schema.node(class_type)
    if node_schema is None:
        close = difflib.get_close_matches(class_type, schema.class_types, n=3, cutoff=0.75)
        fix = f"install the custom node that provides {class_type}"
        if close:
            fix = f"did you mean {' or '.join(repr(c) for c in close)}? otherwise {fix}"
        message = f"node type {class_type!r} is not installed (unknown to {schema.origin})"
        problems.append(
            Problem(node_id, _title(node), class_type, None, "unknown_node_type", message, fix)
        )
    return node_schema


def _missing(target: Target, spec: InputSpec) -> Problem:
    if spec.is_widget:
        fix = f"set it: --set {target.node_id}.{spec.name}=VALUE"
        if "default" in spec.config:
            fix += f" (default {spec.config['default']!r})"
    else:
        fix = f"connect a node that outputs {spec.type}"
    return target.problem("required_input_missing", "required input is missing", fix)


def _with_dependents(
    problems: list[Problem], prompt: Mapping[str, Any], outputs: list[str]
) -> list[Problem]:
    """Problems with ``dependent_outputs``: the outputs whose upstream contains the node."""
    if not problems:
        return problems
    upstream = {output: _ancestors(output, prompt) for output in outputs}
    result: list[Problem] = []
    for problem in problems:
        if problem.node_id is None:
            result.append(problem)
            continue
        dependents = tuple(o for o in outputs if problem.node_id in upstream[o])
        result.append(
            Problem(
                problem.node_id,
                problem.title,
                problem.class_type,
                problem.input_name,
                problem.kind,
                problem.message,
                problem.fix,
                dependents,
            )
        )
    return result


def _ancestors(node_id: str, prompt: Mapping[str, Any]) -> set[str]:
    seen = {node_id}
    pending = [node_id]
    while pending:
        node = prompt.get(pending.pop())
        inputs = node.get("inputs") if isinstance(node, dict) else None
        for value in (inputs or {}).values() if isinstance(inputs, dict) else ():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                if value[0] not in seen:
                    seen.add(value[0])
                    pending.append(value[0])
    return seen


def _title(node: Any) -> str | None:
    meta = node.get("_meta") if isinstance(node, dict) else None
    title = meta.get("title") if isinstance(meta, dict) else None
    return title if isinstance(title, str) else None
