"""Pre-flight validation catches what ComfyUI rejects (workflows.validate)."""

from __future__ import annotations

import json

import pytest
from workflow_data import PROTOCOL

from comfyfarm.workflows import validate_prompt

TRACE_06 = json.loads((PROTOCOL / "06_validation_errors.json").read_text())
CASES = [
    pytest.param(entry, id=entry["note"])
    for entry in TRACE_06["http"]
    if isinstance(entry.get("request_json"), dict) and "prompt" in entry["request_json"]
]


@pytest.mark.parametrize("entry", CASES)
def test_every_comfyui_rejection_of_trace_06_is_caught(schema, entry):
    """Each node error ComfyUI reported is a problem with the same node id and input."""
    prompt = entry["request_json"]["prompt"]
    answer = entry["response_json"]
    problems = validate_prompt(prompt, schema)
    found = {(p.node_id, p.input_name) for p in problems}
    for node_id, node_error in answer.get("node_errors", {}).items():
        assert any(pid == node_id for pid, _ in found), (node_id, problems)
        for error in node_error["errors"]:
            input_name = error.get("extra_info", {}).get("input_name")
            if input_name is not None:
                assert (node_id, input_name) in found, (node_id, input_name, problems)
        dependent = {o for p in problems if p.node_id == node_id for o in p.dependent_outputs}
        assert set(node_error["dependent_outputs"]) <= dependent
    error = answer.get("error")
    if entry["status"] == 400 and not answer.get("node_errors"):
        assert problems, error
        kinds = {p.kind for p in problems}
        if error["type"] == "prompt_no_outputs":
            assert "prompt_no_outputs" in kinds
        else:
            assert kinds & {"unknown_node_type", "missing_class_type"}
            assert "1" in {p.node_id for p in problems}
    if entry["status"] == 200 and not answer.get("node_errors"):
        assert problems == []


def test_trace_15_missing_checkpoint_is_a_missing_model(schema):
    """The converted SD1.5 prompt's 400 (ckpt_name not in []) is found with a fix."""
    trace = json.loads((PROTOCOL / "15_ui_to_api_sd15_text2image.json").read_text())
    [problem] = validate_prompt(trace["api_prompt"], schema)
    assert (problem.node_id, problem.input_name, problem.kind) == (
        "4",
        "ckpt_name",
        "missing_model",
    )
    assert problem.fix == "put v1-5-pruned-emaonly-fp16.safetensors in models/checkpoints"
    assert problem.dependent_outputs == ("9",)


def _image_prompt(**inputs):
    base = {"width": 64, "height": 64, "batch_size": 1, "color": 0}
    base.update(inputs)
    return {
        "1": {"class_type": "EmptyImage", "inputs": base},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
    }


@pytest.mark.parametrize(
    ("prompt_change", "kind"),
    [
        ({"width": "abc"}, "invalid_input_type"),
        ({"width": 0}, "value_smaller_than_min"),
        ({"width": 10**6}, "value_bigger_than_max"),
        ({"width": [1, 2, 3]}, "bad_linked_input"),
        ({"width": [1, 0]}, "bad_linked_input"),
        ({"width": ["9", 0]}, "link_to_missing_node"),
    ],
)
def test_value_problems(schema, prompt_change, kind):
    """Each kind of bad value is reported with its ComfyUI-style kind."""
    [problem] = validate_prompt(_image_prompt(**prompt_change), schema)
    assert (problem.node_id, problem.input_name, problem.kind) == ("1", "width", kind)


def test_numeric_strings_and_wrapped_arrays_are_accepted(schema):
    """'16' is accepted for INT (ComfyUI converts it) and __value__ arrays are values."""
    assert validate_prompt(_image_prompt(width="16"), schema) == []
    assert validate_prompt(_image_prompt(width={"__value__": [1]}), schema) == []


def test_value_in_a_link_input_is_an_error(schema):
    """A plain value where an IMAGE link belongs is reported."""
    prompt = _image_prompt()
    prompt["2"]["inputs"]["images"] = "not a link"
    [problem] = validate_prompt(prompt, schema)
    assert (problem.input_name, problem.kind) == ("images", "invalid_input_type")


def test_unknown_node_type_suggests_a_close_name(schema):
    """A typo in class_type gets a did-you-mean; a custom node gets an install hint."""
    prompt = _image_prompt()
    prompt["1"]["class_type"] = "EmptyImag"
    [problem] = validate_prompt(prompt, schema)
    assert problem.kind == "unknown_node_type" and "did you mean 'EmptyImage'" in problem.fix


def test_node_that_is_not_an_object_is_invalid(schema):
    """A node entry that is not {class_type, inputs} is reported."""
    prompt = _image_prompt()
    prompt["3"] = ["SaveImage"]
    assert any(
        p.node_id == "3" and p.kind == "invalid_node" for p in validate_prompt(prompt, schema)
    )


def test_combo_linked_from_a_string_output_is_accepted(schema):
    """A combo input fed by a STRING output passes (ComfyUI would accept it)."""
    prompt = {
        "1": {"class_type": "PrimitiveString", "inputs": {"value": "euler"}},
        "2": {
            "class_type": "EmptyImage",
            "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0},
        },
        "3": {
            "class_type": "ImageScale",
            "inputs": {
                "image": ["2", 0],
                "upscale_method": ["1", 0],
                "width": 8,
                "height": 8,
                "crop": "disabled",
            },
        },
        "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}},
    }
    assert validate_prompt(prompt, schema) == []


def test_dependent_outputs_name_only_the_outputs_a_problem_stops(schema):
    """A problem on one branch lists only the output of that branch."""
    prompt = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0},
        },
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "a"}},
        "3": {
            "class_type": "ImageScale",
            "inputs": {
                "image": ["1", 0],
                "upscale_method": "bogus",
                "width": 8,
                "height": 8,
                "crop": "disabled",
            },
        },
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "b"}},
        "5": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}},
    }
    [problem] = validate_prompt(prompt, schema)
    assert problem.dependent_outputs == ("4", "5")
    assert problem.fix is None or "did you mean" in problem.fix


def test_problems_render_one_line_each(schema):
    """str(problem) names node, title, class, input, message and fix on one line."""
    prompt = _image_prompt(width=0)
    prompt["1"]["_meta"] = {"title": "Canvas"}
    [problem] = validate_prompt(prompt, schema)
    assert str(problem) == (
        "node 1 (Canvas, EmptyImage) input width: 0 is smaller than the minimum 1"
        " — fix: use 1 or more"
    )
    assert problem.to_dict()["dependent_outputs"] == ["2"]


def test_missing_model_with_an_installed_alternative(object_info):
    """With /models lists, a missing model suggests the closest installed file."""
    from comfyfarm.workflows import SchemaSource

    schema = SchemaSource.from_object_info(
        object_info, models={"checkpoints": ["v1-5-pruned-emaonly.safetensors"]}
    )
    prompt = {
        "4": {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": "v1-5-pruned-emaonly-fp16.safetensors"},
        },
    }
    problems = validate_prompt(prompt, schema)
    missing = [p for p in problems if p.kind == "missing_model"][0]
    assert "did you mean 'v1-5-pruned-emaonly.safetensors'" in missing.fix
    assert any(p.kind == "prompt_no_outputs" for p in problems)


def test_a_checkpoint_named_by_url_passes_preflight(schema):
    """ckpt_name may be an http(s) URL of a model file (the worker downloads it): no problem."""
    trace = json.loads((PROTOCOL / "15_ui_to_api_sd15_text2image.json").read_text())
    prompt = trace["api_prompt"]
    prompt["4"]["inputs"]["ckpt_name"] = "https://hub.example/m/sd15.safetensors"
    assert validate_prompt(prompt, schema) == []


def test_a_model_url_that_is_not_a_model_file_is_refused(schema):
    """A URL whose file is not a model (.exe, a page) is refused with where and why."""
    trace = json.loads((PROTOCOL / "15_ui_to_api_sd15_text2image.json").read_text())
    prompt = trace["api_prompt"]
    prompt["4"]["inputs"]["ckpt_name"] = "https://hub.example/m/page.html"
    [problem] = validate_prompt(prompt, schema)
    assert (problem.node_id, problem.input_name, problem.kind) == (
        "4",
        "ckpt_name",
        "invalid_model_url",
    )


QUICK_VALUES = [0, 1, -1, 7, 2.5, -0.5, 1e300, 10**30, True, False, None, "", "euler", "karras",
                "https://example.com/m.safetensors", "v1-5-pruned-emaonly.safetensors",
                ["1", 0], ["1", 5], ["missing", 0], ["1", True], [1, 0], ["1"], {"__value__": []},
                {"a": 1}, float("nan"), float("inf")]  # fmt: skip


def test_the_quick_acceptance_never_accepts_what_the_full_check_refuses(schema):
    """validate_prompt skips the full check of inputs it accepts quickly: for every input of
    every node class and many kinds of values, a quick yes means the full check finds nothing."""
    from comfyfarm.workflows.problems import Target
    from comfyfarm.workflows.validate import _accepted, check_input

    prompt = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {}}}
    checked = accepted = 0
    for class_type in schema.class_types:
        node = schema.node(class_type)
        assert node is not None
        for name, spec in node.inputs.items():
            values = [*QUICK_VALUES, *(spec.options or ())[:3], spec.minimum, spec.maximum]
            for value in values:
                checked += 1
                if not _accepted(value, spec, prompt, schema):
                    continue
                accepted += 1
                target = Target("2", name, None, class_type)
                assert check_input(value, spec, target, prompt, schema) is None, (
                    class_type, name, value,
                )  # fmt: skip
    assert accepted > 100 and checked > accepted  # both paths were exercised


def test_plain_json_is_exactly_json_that_travels() -> None:
    """is_plain_json (the fast path of json_problem) says no to every value json_problem
    refuses, and yes to ordinary prompt values."""
    from comfyfarm.workflows.jsonsafe import MAX_DEPTH, is_plain_json, json_problem

    deep: object = 1
    for _ in range(MAX_DEPTH + 1):
        deep = [deep]
    bad = [float("nan"), float("-inf"), "\udcff", {"\udcff": 1}, {1: 2}, 10**40, deep, {1, 2},
           b"bytes", {"a": [1, {"b": float("nan")}]}]  # fmt: skip
    good = [{"seed": 2**63, "text": "ünïcode", "cfg": 7.5, "on": True, "x": None,
             "link": ["4", 0], "arr": {"__value__": [1, 2]}}, [], {}, "", 0]  # fmt: skip

    assert [is_plain_json(value) for value in bad] == [False] * len(bad)
    assert all(json_problem(value) is not None for value in bad)
    assert all(is_plain_json(value) and json_problem(value) is None for value in good)
