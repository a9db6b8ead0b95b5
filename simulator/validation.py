"""POST /prompt validation, mirroring ComfyUI's ``validate_prompt`` and ``validate_inputs``.

The code keeps ComfyUI's structure on purpose: the prompt is untrusted JSON, and the same
Python operations on it (``prompt[o_id]['class_type']``, ``int(val)``, ``r[val[1]]``) raise the
same exceptions, which become the same ``exception_during_validation`` errors. Values are
coerced in place (``"16"`` becomes ``16`` in the stored prompt), as ComfyUI does.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from comfyfarm.simulator.schema import NodeSchemas

Error = dict[str, Any]
Result = tuple[bool, list[Error], str]


@dataclass
class Validation:
    """The outcome: ``ok`` with the output node ids to execute, or the 400 ``error``."""

    ok: bool
    error: Error | None
    outputs: list[str]
    node_errors: dict[str, Any] = field(default_factory=dict)


def full_type_name(klass: type) -> str:
    module = klass.__module__
    return klass.__qualname__ if module == "builtins" else f"{module}.{klass.__qualname__}"


def _error(kind: str, message: str, details: str = "") -> Error:
    return {"type": kind, "message": message, "details": details, "extra_info": {}}


def validate_prompt(
    prompt: Any, schemas: NodeSchemas, partial_targets: list[str] | None = None
) -> Validation:
    """Validate an API-format prompt against the known node schemas."""
    outputs: list[str] = []
    for x in prompt:
        if "class_type" not in prompt[x]:
            details = f"Node ID '#{x}'"
            message = "Cannot execute because a node is missing the class_type property."
            return Validation(False, _error("invalid_prompt", message, details), [], {})
        class_type = prompt[x]["class_type"]
        if class_type not in schemas:
            message = f"Cannot execute because node {class_type} does not exist."
            return Validation(False, _error("invalid_prompt", message, f"Node ID '#{x}'"), [], {})
        if schemas.is_output(class_type) and (partial_targets is None or x in partial_targets):
            outputs.append(x)
    if not outputs:
        return Validation(False, _error("prompt_no_outputs", "Prompt has no outputs"), [], {})

    good: list[str] = []
    failed: list[tuple[str, list[Error]]] = []
    node_errors: dict[str, Any] = {}
    validated: dict[str, Result] = {}
    checker = _InputChecker(prompt, schemas, validated)
    for o in outputs:
        try:
            valid, reasons, _ = checker.validate(o, [])
        except Exception as ex:
            valid = False
            reasons = [
                {
                    "type": "exception_during_validation",
                    "message": "Exception when validating node",
                    "details": str(ex),
                    "extra_info": {
                        "exception_type": full_type_name(type(ex)),
                        "traceback": traceback.format_tb(ex.__traceback__),
                    },
                }
            ]
            validated[o] = (False, reasons, o)
        if valid:
            good.append(o)
            continue
        failed.append((o, reasons))
        for node_id, (node_valid, node_reasons, _) in validated.items():
            # Nodes downstream of a failing node are invalid without reasons of their own;
            # ComfyUI reports only the nodes that carry reasons.
            if node_valid or not node_reasons:
                continue
            if node_id not in node_errors:
                node_errors[node_id] = {
                    "errors": node_reasons,
                    "dependent_outputs": [],
                    "class_type": prompt[node_id]["class_type"],
                }
            node_errors[node_id]["dependent_outputs"].append(o)

    if not good:
        lines = [f"{e['message']}: {e['details']}" for _, errors in failed for e in errors]
        error = _error("prompt_outputs_failed_validation", "Prompt outputs failed validation")
        error["details"] = "\n".join(lines)
        return Validation(False, error, [], node_errors)
    return Validation(True, None, good, node_errors)


def validate_node_input(received_type: Any, input_type: Any) -> bool:
    """ComfyUI's link type check: equal, ``*`` on either side, or a shared comma-separated type."""
    if not received_type != input_type:
        return True
    if not isinstance(received_type, str) or not isinstance(input_type, str):
        return False
    received = {t.strip() for t in received_type.split(",")}
    wanted = {t.strip() for t in input_type.split(",")}
    if "*" in received or "*" in wanted:
        return True
    return bool(received & wanted)


def _input_info(class_inputs: dict[str, Any], name: str) -> tuple[Any, str, dict[str, Any]]:
    for category in ("required", "optional", "hidden"):
        spec = class_inputs.get(category, {}).get(name)
        if spec is not None:
            if isinstance(spec, str):  # hidden inputs are bare type names
                return spec, category, {}
            extra = spec[1] if len(spec) > 1 else {}
            return spec[0], category, extra
    raise KeyError(name)


class _InputChecker:
    """``validate_inputs`` with its memo (``validated``) shared across the outputs of one prompt."""

    def __init__(self, prompt: Any, schemas: NodeSchemas, validated: dict[str, Result]) -> None:
        self.prompt = prompt
        self.schemas = schemas
        self.validated = validated
        self.custom: dict[str, tuple[tuple[str, ...], Callable[..., object]]] = {
            "LoadImage": (("image",), self._load_image_ok),
        }

    def _load_image_ok(self, image: Any) -> object:
        if not self.schemas.roots.exists_annotated(image):
            return f"Invalid image file: {image}"
        return True

    def validate(self, unique_id: str, visiting: list[str]) -> Result:
        if unique_id in self.validated:
            return self.validated[unique_id]
        if unique_id in visiting:
            return self._cycle(unique_id, visiting)
        prompt = self.prompt
        inputs = prompt[unique_id]["inputs"]
        class_type = prompt[unique_id]["class_type"]
        custom_args, custom_check = self.custom.get(class_type, ((), None))
        # A custom validator replaces the choice check, so its list need not be computed.
        class_inputs = self.schemas.class_inputs(class_type, fill_lists=custom_check is None)
        names = [*class_inputs.get("required", {}), *class_inputs.get("optional", {})]
        errors: list[Error] = []
        valid = True
        for x in names:
            input_type, category, extra = _input_info(class_inputs, x)
            if x not in inputs:
                if category == "required":
                    errors.append(
                        {
                            "type": "required_input_missing",
                            "message": "Required input is missing",
                            "details": f"{x}",
                            "extra_info": {"input_name": x},
                        }
                    )
                continue
            val = inputs[x]
            info = (input_type, extra)
            if isinstance(val, list):
                error = self._check_link(x, val, info)
                if error is not None:
                    errors.append(error)
                    continue
                try:
                    visiting.append(unique_id)
                    try:
                        upstream = self.validate(val[0], visiting)
                    finally:
                        visiting.pop()
                    if upstream[0] is False:
                        valid = False
                except Exception as ex:
                    valid = False
                    self.validated[val[0]] = (False, [_inner_exception(x, info, val, ex)], val[0])
                continue
            error = self._check_value(inputs, x, val, info, skip_range=x in custom_args)
            if error is not None:
                errors.append(error)
        if custom_check is not None:
            errors.extend(self._custom(class_type, inputs, custom_args, custom_check))
        result: Result = (
            (False, errors, unique_id) if errors or not valid else (True, [], unique_id)
        )
        flagged = self.validated.get(unique_id)  # set meanwhile when this node closes a cycle
        if flagged is not None and flagged[1] and not errors:
            result = flagged
        self.validated[unique_id] = result
        return result

    def _check_link(self, x: str, val: list[Any], info: tuple[Any, Any]) -> Error | None:
        if len(val) != 2:
            return {
                "type": "bad_linked_input",
                "message": "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                "details": f"{x}",
                "extra_info": {"input_name": x, "input_config": info, "received_value": val},
            }
        o_class_type = self.prompt[val[0]]["class_type"]
        received_type = self.schemas.return_types(o_class_type)[val[1]]
        if validate_node_input(received_type, info[0]):
            return None
        return {
            "type": "return_type_mismatch",
            "message": "Return type mismatch between linked nodes",
            "details": f"{x}, received_type({received_type}) mismatch input_type({info[0]})",
            "extra_info": {
                "input_name": x,
                "input_config": info,
                "received_type": received_type,
                "linked_node": val,
            },
        }

    def _check_value(
        self, inputs: dict[str, Any], x: str, val: Any, info: tuple[Any, Any], *, skip_range: bool
    ) -> Error | None:
        input_type, extra = info
        try:
            if isinstance(val, dict) and "__value__" in val:
                val = inputs[x] = val["__value__"]
            convert: Callable[[Any], Any] | None = (
                {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}.get(input_type)
                if isinstance(input_type, str)
                else None
            )
            if convert is not None:
                val = inputs[x] = convert(val)
        except Exception as ex:
            return {
                "type": "invalid_input_type",
                "message": f"Failed to convert an input value to a {input_type} value",
                "details": f"{x}, {val}, {ex}",
                "extra_info": {
                    "input_name": x,
                    "input_config": info,
                    "received_value": val,
                    "exception_message": str(ex),
                },
            }
        if skip_range:
            return None
        if "min" in extra and val < extra["min"]:
            return _range_error("value_smaller_than_min", "smaller than min", x, val, info)
        if "max" in extra and val > extra["max"]:
            return _range_error("value_bigger_than_max", "bigger than max", x, val, info)
        if isinstance(input_type, list) or input_type == "COMBO":
            options = extra.get("options", []) if input_type == "COMBO" else input_type
            if val not in options:
                config: Any = info
                listing = str(options)
                if len(options) > 20:  # ComfyUI does not echo long model lists
                    listing, config = f"(list of length {len(options)})", None
                return {
                    "type": "value_not_in_list",
                    "message": "Value not in list",
                    "details": f"{x}: '{val}' not in {listing}",
                    "extra_info": {"input_name": x, "input_config": config, "received_value": val},
                }
        return None

    def _custom(
        self,
        class_type: str,
        inputs: dict[str, Any],
        args: tuple[str, ...],
        check: Callable[..., object],
    ) -> list[Error]:
        # Linked values are not available before execution: ComfyUI leaves them out.
        present = {
            name: inputs[name]
            for name in args
            if name in inputs and not isinstance(inputs[name], list)
        }
        missing = [name for name in args if name not in present]
        if missing:
            raise TypeError(
                f"{class_type}.VALIDATE_INPUTS() missing 1 required positional argument: "
                f"'{missing[0]}'"
            )
        verdict = check(**present)
        if verdict is True:
            return []
        errors = []
        for name in present:
            details = name if verdict is False else f"{name} - {verdict}"
            errors.append(
                {
                    "type": "custom_validation_failed",
                    "message": "Custom validation failed for node",
                    "details": details,
                    "extra_info": {"input_name": name},
                }
            )
        return errors

    def _cycle(self, unique_id: str, visiting: list[str]) -> Result:
        path = [*visiting[visiting.index(unique_id) :], unique_id]
        nodes = list(dict.fromkeys(path))
        text = " -> ".join(f"{n} ({self.prompt[n]['class_type']})" for n in path)
        for node_id in nodes:
            self.validated[node_id] = (
                False,
                [
                    {
                        "type": "dependency_cycle",
                        "message": "Dependency cycle detected",
                        "details": text,
                        "extra_info": {"node_id": node_id, "cycle_nodes": nodes},
                    }
                ],
                node_id,
            )
        return self.validated[unique_id]


def _range_error(kind: str, words: str, x: str, val: Any, info: tuple[Any, Any]) -> Error:
    limit = info[1]["min" if kind == "value_smaller_than_min" else "max"]
    return {
        "type": kind,
        "message": f"Value {val} {words} of {limit}",
        "details": f"{x}",
        "extra_info": {"input_name": x, "input_config": info, "received_value": val},
    }


def _inner_exception(x: str, info: tuple[Any, Any], val: Any, ex: Exception) -> Error:
    return {
        "type": "exception_during_inner_validation",
        "message": "Exception when validating inner node",
        "details": str(ex),
        "extra_info": {
            "input_name": x,
            "input_config": info,
            "exception_message": str(ex),
            "exception_type": full_type_name(type(ex)),
            "traceback": traceback.format_tb(ex.__traceback__),
            "linked_node": val,
        },
    }
