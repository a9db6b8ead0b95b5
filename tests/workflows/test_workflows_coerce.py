"""Coercion of user values against node schemas (workflows.coerce)."""

from __future__ import annotations

import random

import pytest

from comfyfarm.workflows import ParameterError, SchemaSource
from comfyfarm.workflows.coerce import coerce_value
from comfyfarm.workflows.problems import Target


def _coerce(schema, class_type, input_name, value, raw=None):
    spec = schema.node(class_type).inputs[input_name]
    target = Target("1", input_name, None, class_type)
    return coerce_value(value, spec, target, raw=raw, schema=schema)


def _problem(schema, class_type, input_name, value):
    with pytest.raises(ParameterError) as caught:
        _coerce(schema, class_type, input_name, value)
    return caught.value.problems[0]


def test_numbers_convert_from_text(schema):
    """'30' becomes 30 for INT and '7.5' becomes 7.5 for FLOAT."""
    assert _coerce(schema, "KSampler", "steps", "30") == 30
    assert _coerce(schema, "KSampler", "steps", 30.0) == 30
    assert _coerce(schema, "KSampler", "cfg", "7.5") == 7.5


def test_int_rejects_text_and_booleans(schema):
    """'abc' and true are not integers."""
    assert _problem(schema, "KSampler", "steps", "abc").kind == "invalid_input_type"
    assert _problem(schema, "KSampler", "steps", True).kind == "invalid_input_type"


def test_range_errors_say_the_limit(schema):
    """Below min and above max are reported with the limit as the fix."""
    low = _problem(schema, "KSampler", "steps", 0)
    assert low.kind == "value_smaller_than_min" and low.fix == "use 1 or more"
    high = _problem(schema, "KSampler", "denoise", 1.5)
    assert high.kind == "value_bigger_than_max" and high.fix == "use 1 or less"


def test_int_step_grid_is_enforced(schema):
    """EmptyLatentImage width moves in steps of 8: 513 suggests 512 or 520."""
    problem = _problem(schema, "EmptyLatentImage", "width", 513)
    assert problem.kind == "value_not_on_step" and problem.fix == "use 512 or 520"
    assert _coerce(schema, "EmptyLatentImage", "width", 768) == 768


def test_float_step_uses_round_when_given(schema):
    """cfg rounds to 0.01 (not its 0.1 step); denoise keeps its 0.01 step."""
    assert _coerce(schema, "KSampler", "cfg", 7.55) == 7.55
    assert _problem(schema, "KSampler", "cfg", 7.555).kind == "value_not_on_step"
    assert _coerce(schema, "KSampler", "denoise", 0.6) == 0.6
    assert _problem(schema, "KSampler", "denoise", 0.333).fix == "use 0.33 or 0.34"


def test_enum_suggests_close_choices(schema):
    """A sampler name that is not in the list gets close matches."""
    problem = _problem(schema, "KSampler", "sampler_name", "eulr")
    assert problem.kind == "value_not_in_list" and "'euler'" in problem.fix
    case = _problem(schema, "KSampler", "scheduler", "Karras")
    assert case.fix.startswith("did you mean 'karras'")


def test_missing_model_says_where_to_put_it(schema):
    """A checkpoint not on the server is a missing model with the folder to put it in."""
    problem = _problem(schema, "CheckpointLoaderSimple", "ckpt_name", "sd15.safetensors")
    assert problem.kind == "missing_model"
    assert problem.fix == "put sd15.safetensors in models/checkpoints"


def test_model_lists_from_the_models_route_count(object_info):
    """A model listed by /models/{folder} is accepted even if the combo list is stale."""
    schema = SchemaSource.from_object_info(
        object_info, models={"checkpoints": ["sd15.safetensors", "sdxl.safetensors"]}
    )
    assert _coerce(schema, "CheckpointLoaderSimple", "ckpt_name", "sd15.safetensors")
    problem = _problem(schema, "CheckpointLoaderSimple", "ckpt_name", "sd15.safetensor")
    assert "did you mean 'sd15.safetensors'" in problem.fix


def test_strings_keep_the_typed_text(schema):
    """A STRING input keeps '007' as typed even though it parses as a number."""
    assert _coerce(schema, "SaveImage", "filename_prefix", 7, raw="007") == "007"
    assert _coerce(schema, "SaveImage", "filename_prefix", 7) == "7"


def test_booleans_accept_words(schema):
    """true/false/yes/no/1/0 are booleans; other words are not."""
    spec_owner = "ImageStitch"
    assert _coerce(schema, spec_owner, "match_image_size", "yes") is True
    assert _coerce(schema, spec_owner, "match_image_size", 0) is False
    assert _problem(schema, spec_owner, "match_image_size", "maybe").kind == "invalid_input_type"


def test_combo_number_is_matched_as_text():
    """--set x=1 picks the combo choice '1'."""
    schema = SchemaSource.from_object_info(
        {"N": {"input": {"required": {"mode": [["1", "2"]]}}, "output": [], "name": "N"}}
    )
    assert _coerce(schema, "N", "mode", 1) == "1"


def test_random_is_a_fresh_int_within_range(schema):
    """'random' for an INT input draws within its min/max."""
    spec = schema.node("EmptyImage").inputs["color"]
    target = Target("1", "color")
    values = {coerce_value("random", spec, target, rng=random.Random(i)) for i in range(20)}
    assert len(values) > 1 and all(0 <= v <= 16777215 for v in values)
