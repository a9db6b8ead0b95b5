"""prepare_jobs: a workflow plus parameters, overrides, sweeps and a count → concrete jobs.

The sequence for every job: load (API or UI format; UI converted with the schema source), apply the
sidecar defaults, then ``--param``, then ``--set``, then this job's sweep values — each value
coerced and checked against the node schema, ``random`` drawn fresh, input files checked and
recorded as InputRef — and finally validate the prompt so ComfyUI will not reject it. All problems
found in the first failing job are raised together.

``apply_inputs`` is the same sequence for one job whose values arrive as typed JSON from a network
caller (the gateway's ``inputs``): no local file is ever looked at (an upload input takes the value
as a name, for the caller's own asset resolution), and the problems come back by parameter.
"""

from __future__ import annotations

import difflib
import random
from collections.abc import Mapping, Sequence
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comfyfarm.workflows.coerce import RANDOM, coerce_value, random_int
from comfyfarm.workflows.errors import ParameterError, PromptInvalid, WorkflowError
from comfyfarm.workflows.formats import Workflow, load_workflow
from comfyfarm.workflows.graphcheck import structure_problems
from comfyfarm.workflows.inputs import InputRef, check_input_file, names_a_file
from comfyfarm.workflows.overrides import (
    Setting,
    input_spec,
    is_address,
    parse_address,
    parse_setting,
    resolve_address,
    set_input,
    set_pointer,
)
from comfyfarm.workflows.params import LOAD_IMAGE_TYPES, ParamSet, infer_params, load_sidecar
from comfyfarm.workflows.problems import Problem, Target, general
from comfyfarm.workflows.schema import InputSpec, SchemaSource
from comfyfarm.workflows.sweeps import MAX_JOBS, expand, parse_sweep
from comfyfarm.workflows.validate import validate_prompt


@dataclass(frozen=True)
class PreparedJob:
    """One concrete job: the API prompt to POST, its parameter record and its input files."""

    prompt: dict[str, Any]
    params: dict[str, Any]
    inputs: list[InputRef] = field(default_factory=list)
    workflow_name: str = "workflow"

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "params": self.params,
            "inputs": [ref.to_dict() for ref in self.inputs],
            "workflow_name": self.workflow_name,
        }


def prepare_jobs(
    source: Workflow | Path | str | Mapping[str, Any],
    *,
    schema: SchemaSource | None,
    params: Sequence[str] = (),
    sets: Sequence[str] = (),
    sweeps: Sequence[str] = (),
    zip_sweeps: bool = False,
    count: int = 1,
    validate: bool = True,
    rng: random.Random | None = None,
) -> list[PreparedJob]:
    """Concrete jobs for a workflow (raises WorkflowError subclasses, problems listed).

    Without a schema source the prompt is neither coerced nor validated (and a UI workflow cannot
    be converted); with one, every job is validated unless ``validate=False``.
    """
    workflow = source if isinstance(source, Workflow) else load_workflow(source)
    base = workflow.to_api(schema)
    param_set = workflow_params(workflow, base, schema)
    fixed = [parse_setting(text, origin="param", flag="--param") for text in params]
    fixed += [parse_setting(text, origin="set", flag="--set") for text in sets]
    axes = [parse_sweep(text) for text in sweeps]
    bad_keys = _check_keys(fixed, [axis.key for axis in axes], param_set)
    if bad_keys:
        # Report the values of the good settings too, so one run shows every mistake.
        good = [s for s in fixed if s.key not in bad_keys]
        problems = [p for keyed in bad_keys.values() for p in keyed]
        try:
            _prepare_one(workflow.name, base, good, param_set, schema, rng)
        except WorkflowError as exc:
            problems += exc.problems
        raise ParameterError(problems=problems)
    if count < 1:
        raise ParameterError(problems=[general("bad_value", f"count must be >= 1, got {count}")])
    combos = expand(axes, zip_sweeps=zip_sweeps)
    if len(combos) * count > MAX_JOBS:
        message = f"{len(combos)} sweep combinations x count {count} is more than {MAX_JOBS} jobs"
        raise ParameterError(problems=[general("bad_sweep", message)])
    given = {s.key for s in fixed} | {axis.key for axis in axes}
    defaults = [
        Setting(name, p.default, None, "default")
        for name, p in param_set.params.items()
        if p.has_default and name not in given
    ]
    jobs: list[PreparedJob] = []
    for combo in combos:
        for _ in range(count):
            job = _prepare_one(
                workflow.name, base, [*defaults, *fixed, *combo], param_set, schema, rng
            )
            if validate and schema is not None:
                uploads = {(ref.node_id, ref.input_name) for ref in job.inputs}
                problems = validate_prompt(job.prompt, schema, uploads=uploads)
                if problems:
                    raise PromptInvalid(problems=problems)
            elif validate:
                problems = structure_problems(job.prompt)  # no schemas: what needs none
                if problems:
                    raise PromptInvalid(problems=problems)
            jobs.append(job)
    return jobs


@dataclass(frozen=True)
class AppliedInputs:
    """``apply_inputs``' answer: the prompt with the values set, the record of what each name
    set, and the problems of each name that could not be set (empty: all were)."""

    prompt: dict[str, Any]
    params: dict[str, Any]
    problems: dict[str, list[Problem]]


def apply_inputs(
    prompt: Mapping[str, Any],
    values: Mapping[str, Any],
    *,
    schema: SchemaSource | None,
    rng: random.Random | None = None,
) -> AppliedInputs:
    """Set ``values`` (a parameter name — inferred from ``prompt``, see ``workflows.params`` — or
    a ``NODE.INPUT`` address → a JSON value) into a copy of an API-format ``prompt`` (of the
    shape ``tasks.spec.check_prompt`` checks: check an untrusted one first).

    For untrusted callers: nothing here reads or probes a local file or fetches a URL, whatever
    the value; an upload input (``LoadImage.image``) takes a string or ``core/ASSET`` object as
    it is; any other input takes a JSON scalar, coerced and checked against ``schema`` as
    ``--param`` values are. The prompt is not validated as a whole (the caller does that after
    resolving its asset references).
    """
    param_set = infer_params(prompt, schema)
    out = deepcopy(dict(prompt))
    settings = [Setting(key, value, None, "param") for key, value in values.items()]
    problems: dict[str, list[Problem]] = {
        s.key: [_unknown_param(s.key, param_set, direct='"NODE.INPUT" (e.g. "6.text")')]
        for s in settings
        if not is_address(s.key) and s.key not in param_set.params
    }
    record: dict[str, Any] = {}
    for setting in settings:
        if setting.key in problems:
            continue
        try:
            record[setting.key] = _apply(out, setting, param_set, schema, [], rng,
                                         local_files=False)  # fmt: skip
        except WorkflowError as exc:
            problems[setting.key] = _located(exc.problems, setting)
    return AppliedInputs(out, record, problems)


def workflow_params(
    workflow: Workflow, prompt: Mapping[str, Any], schema: SchemaSource | None
) -> ParamSet:
    """The sidecar's parameters when there is a sidecar, else the inferred ones."""
    sidecar = workflow.sidecar_path
    if sidecar is not None and sidecar.is_file():
        return load_sidecar(sidecar)
    return infer_params(prompt, schema)


def _prepare_one(
    name: str,
    base: Mapping[str, Any],
    settings: list[Setting],
    param_set: ParamSet,
    schema: SchemaSource | None,
    rng: random.Random | None,
) -> PreparedJob:
    prompt = deepcopy(dict(base))
    record: dict[str, Any] = {}
    inputs: list[InputRef] = []
    errors: list[WorkflowError] = []
    for setting in settings:
        try:
            record[setting.key] = _apply(prompt, setting, param_set, schema, inputs, rng)
        except WorkflowError as exc:
            exc.problems = _located(exc.problems, setting)
            errors.append(exc)
    if len(errors) == 1:
        raise errors[0]  # keeps its type (InputFileError, ...)
    if errors:
        raise ParameterError(problems=[p for error in errors for p in error.problems])
    return PreparedJob(prompt=prompt, params=record, inputs=inputs, workflow_name=name)


def _apply(
    prompt: dict[str, Any],
    setting: Setting,
    param_set: ParamSet,
    schema: SchemaSource | None,
    inputs: list[InputRef],
    rng: random.Random | None,
    *,
    local_files: bool = True,
) -> Any:
    """Set one setting into ``prompt``; returns the value recorded for it. ``local_files``
    False: a value never names a local file or URL (see ``apply_inputs``)."""
    if setting.key in param_set.params and setting.origin != "set":
        addresses: Sequence[str] = param_set.params[setting.key].targets
    else:
        addresses = [setting.key]
    value = setting.value
    recorded: Any = None
    for index, text in enumerate(addresses):
        target = resolve_address(parse_address(text), prompt, schema)
        if isinstance(target, tuple):
            if not local_files:  # a pointer past the inputs could rewrite the graph itself
                message = f"{text}: a JSON pointer here must name an input (/ID/inputs/NAME)"
                raise ParameterError(problems=[general("bad_address", message)])
            set_pointer(prompt, target, value)
            recorded = value if index == 0 else recorded
            continue
        spec = input_spec(prompt, target, schema)
        final: Any = _UNSET if local_files else _untrusted_value(value, target, spec, prompt)
        if final is not _UNSET:
            set_input(prompt, target, final)
        elif local_files and _is_upload(prompt, target, spec) and names_a_file(value, spec):
            image = spec is None or bool(spec.config.get("image_upload"))
            source = check_input_file(str(value), image=image)
            ref = InputRef(target.node_id, target.input_name, source)
            inputs.append(ref)
            set_input(prompt, target, ref.filename)
            final = ref.source
        else:
            if value == RANDOM and _takes_int(prompt, target, spec):
                # One draw, shared by every target of the name (both samplers get one seed).
                value = random_int(spec or InputSpec(target.input_name, "INT", "required"), rng)
            final = coerce_value(value, spec, target, raw=setting.raw, schema=schema, rng=rng)
            set_input(prompt, target, final)
        recorded = final if index == 0 else recorded
    return recorded


_UNSET: Any = object()


def _untrusted_value(
    value: Any,
    target: Target,
    spec: InputSpec | None,
    prompt: Mapping[str, Any],
) -> Any:
    """The value to set from a network caller, or ``_UNSET`` to coerce it as usual. Upload
    inputs keep a name or asset object as given; objects and arrays go nowhere else (a link or
    a Python repr is never what a caller meant)."""
    upload = _is_upload(prompt, target, spec)
    if upload and (isinstance(value, str) or _is_asset_object(value)):
        return value
    if isinstance(value, (dict, list)) or value is None:
        what = "an upload input's file name or asset" if upload else "a text, number or boolean"
        shown = "null" if value is None else type(value).__name__.replace("dict", "object")
        raise ParameterError(
            problems=[target.problem("invalid_input_type", f"expected {what}, got {shown}")]
        )
    return _UNSET


def _is_asset_object(value: Any) -> bool:
    return isinstance(value, dict) and value.get("__type") == "core/ASSET"


def _check_keys(
    fixed: list[Setting], swept: list[str], param_set: ParamSet
) -> dict[str, list[Problem]]:
    """Problems with the names given (unknown, repeated, not an address), by name."""
    problems: dict[str, list[Problem]] = {}
    seen: set[str] = set()
    for key, origin in [(s.key, s.origin) for s in fixed] + [(k, "sweep") for k in swept]:
        found = problems.setdefault(key, [])
        if key in seen:
            found.append(general("bad_value", f"{key!r} is given more than once"))
        seen.add(key)
        if origin == "set" and not is_address(key):
            fix = f"use --param {key}=..." if key in param_set.params else "e.g. --set 6.text=..."
            found.append(general("bad_address", f"--set {key}: not a NODE.INPUT address", fix))
        elif origin != "set" and not is_address(key) and key not in param_set.params:
            found.append(_unknown_param(key, param_set))
    return {key: found for key, found in problems.items() if found}


def _unknown_param(
    key: str, param_set: ParamSet, *, direct: str = "--set NODE.INPUT=VALUE"
) -> Problem:
    names = param_set.names()
    close = difflib.get_close_matches(key, names, n=3, cutoff=0.6)
    listing = ", ".join(names) or "none"
    fix = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    fix += f"or address an input directly: {direct}"
    source = "inferred" if param_set.source == "inferred" else f"from {Path(param_set.source).name}"
    message = f"unknown parameter {key!r}; available ({source}): {listing}"
    return general("unknown_parameter", message, fix)


def _located(problems: list[Problem], setting: Setting) -> list[Problem]:
    """Problems of a parameter say which parameter they came from."""
    if setting.origin not in ("param", "default", "sweep") or is_address(setting.key):
        return problems
    prefix = f"parameter {setting.key!r}: "
    return [
        Problem(
            p.node_id,
            p.title,
            p.class_type,
            p.input_name,
            p.kind,
            prefix + p.message if p.node_id is None else p.message,
            p.fix,
        )
        for p in problems
    ]


def _is_upload(prompt: Mapping[str, Any], target: Target, spec: InputSpec | None) -> bool:
    if spec is not None:
        return spec.is_upload
    return prompt[target.node_id].get("class_type") in LOAD_IMAGE_TYPES and (
        target.input_name == "image"
    )


def _takes_int(prompt: Mapping[str, Any], target: Target, spec: InputSpec | None) -> bool:
    """INT by schema, or (without one) an input that holds an integer now."""
    if spec is not None:
        return spec.type == "INT"
    current = prompt[target.node_id].get("inputs", {}).get(target.input_name)
    return isinstance(current, int) and not isinstance(current, bool)
