"""apply_inputs: named parameters from a network caller (the gateway's ``inputs``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from comfyfarm.workflows import apply_inputs, load_workflow

LOAD_INVERT_SAVE = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "example.png"}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"filename_prefix": "inv", "images": ["2", 0]}},
}


def sd15() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(json.dumps(load_workflow("sd15_text2image").to_api(None)))
    return data


def test_inferred_names_and_addresses_set_typed_values(schema):
    """Names inferred from the prompt and NODE.INPUT addresses land in their inputs, coerced
    by the schema, and are recorded; the given prompt is left as it was."""
    prompt = sd15()
    applied = apply_inputs(
        prompt, {"prompt": "a cat", "steps": 30, "cfg": 6, "7.text": "blurry"}, schema=schema
    )
    assert applied.problems == {}
    assert applied.prompt["6"]["inputs"]["text"] == "a cat"
    assert applied.prompt["3"]["inputs"]["steps"] == 30
    assert applied.prompt["7"]["inputs"]["text"] == "blurry"
    assert applied.params == {"prompt": "a cat", "steps": 30, "cfg": 6, "7.text": "blurry"}
    assert prompt["3"]["inputs"]["steps"] != 30


def test_unknown_names_and_wrong_types_are_reported_by_name(schema):
    """Every bad name comes back under its name: unknown ones with the available names, wrong
    types at the node input they target."""
    applied = apply_inputs(
        sd15(), {"promt": "x", "steps": "many", "cfg": {"a": 1}, "seed": 1}, schema=schema
    )
    assert set(applied.problems) == {"promt", "steps", "cfg"}
    [unknown] = applied.problems["promt"]
    assert unknown.kind == "unknown_parameter" and "did you mean 'prompt'" in (unknown.fix or "")
    assert '"NODE.INPUT"' in (unknown.fix or "")
    [steps] = applied.problems["steps"]
    assert (steps.node_id, steps.input_name, steps.kind) == ("3", "steps", "invalid_input_type")
    [cfg] = applied.problems["cfg"]
    assert (cfg.node_id, cfg.input_name, cfg.kind) == ("3", "cfg", "invalid_input_type")
    assert applied.params == {"seed": 1}


def test_no_value_reads_a_local_file_or_becomes_an_upload(schema, png_file: Path):
    """A path to an existing local image (what ``--param image=`` would upload) or a URL is
    only a name here: set as given, no InputRef, nothing read."""
    for value in (str(png_file), "https://example.com/x.png", "../../etc/passwd"):
        applied = apply_inputs(LOAD_INVERT_SAVE, {"image": value}, schema=schema)
        assert applied.problems == {}
        assert applied.prompt["1"]["inputs"]["image"] == value


def test_an_upload_input_takes_an_asset_object_and_nothing_else_does(schema):
    """A ``core/ASSET`` object goes into an upload input as it is; objects, arrays and null
    go into no other input."""
    asset = {"__type": "core/ASSET", "info": {"id": "8c1c4bd8-4a55-4c4e-9f50-1b9d3f0c0d11"}}
    applied = apply_inputs(LOAD_INVERT_SAVE, {"image": asset}, schema=schema)
    assert applied.problems == {} and applied.prompt["1"]["inputs"]["image"] == asset
    for bad in (asset, ["2", 0], None):
        refused = apply_inputs(LOAD_INVERT_SAVE, {"prefix": bad}, schema=schema)
        [problem] = refused.problems["prefix"]
        assert problem.kind == "invalid_input_type" and problem.node_id == "3"


def test_a_json_pointer_must_name_an_input(schema):
    """``/ID/inputs/NAME`` is an address like ``ID.NAME``; a pointer elsewhere (the class of a
    node, say) is refused rather than rewriting the graph."""
    ok = apply_inputs(LOAD_INVERT_SAVE, {"/3/inputs/filename_prefix": "x"}, schema=schema)
    assert ok.problems == {} and ok.prompt["3"]["inputs"]["filename_prefix"] == "x"
    refused = apply_inputs(LOAD_INVERT_SAVE, {"/3/class_type": "PreviewImage"}, schema=schema)
    assert refused.problems["/3/class_type"][0].kind == "bad_address"


def test_an_input_name_no_address_can_spell_names_no_parameter(schema):
    """An input named with a dot (no ComfyUI input is) is not inferred as a parameter, and the
    other names still are."""
    prompt = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "a.b": 1, "": 2}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}},
    }
    applied = apply_inputs(prompt, {"width": 16}, schema=schema)
    assert applied.problems == {} and applied.prompt["1"]["inputs"]["width"] == 16
    assert "a.b" not in str(apply_inputs(prompt, {"b": 1}, schema=schema).problems["b"][0])
