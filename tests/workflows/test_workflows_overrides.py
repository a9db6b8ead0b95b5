"""--set addressing: node id, title, class type, index, JSON pointer (workflows.overrides)."""

from __future__ import annotations

import pytest

from comfyfarm.workflows import ParameterError, load_workflow, prepare_jobs
from comfyfarm.workflows.overrides import find_node, parse_address, parse_value, resolve_address
from comfyfarm.workflows.problems import Target


@pytest.fixture
def rules(schema, data):
    """The rules fixture as an API prompt: two KSamplers, titled prompts."""
    return load_workflow(data("rules_ui.json")).to_api(schema)


def _set(prompt, schema, *sets):
    return prepare_jobs(prompt, schema=schema, sets=sets, validate=False)[0].prompt


def test_value_parsing_is_json_else_text():
    """Values parse as JSON when they can, otherwise stay the typed text."""
    assert parse_value("30") == 30
    assert parse_value("true") is True
    assert parse_value('"7"') == "7"
    assert parse_value("a cat, 4k") == "a cat, 4k"
    assert parse_value("random") == "random"


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("3.text", Target("3", "text")),
        ('"Positive Prompt".text', Target("3", "text")),
        ("Negative Prompt.text", Target("4", "text")),
        ("Refiner.steps", Target("8", "steps")),
        ("KSampler[0].seed", Target("6", "seed")),
        ("KSampler[1].seed", Target("8", "seed")),
        ("EmptyLatentImage.width", Target("5", "width")),
        ("/5/inputs/height", Target("5", "height")),
    ],
)
def test_addresses_name_one_input(rules, schema, address, expected):
    """Each address form resolves to the node and input it names."""
    target = resolve_address(parse_address(address), rules, schema)
    assert isinstance(target, Target)
    assert (target.node_id, target.input_name) == (expected.node_id, expected.input_name)


def test_unquoted_selector_matches_titles_and_classes(rules):
    """'KSampler' names node 6 (by title and class) and node 8 (class), so it needs an index."""
    with pytest.raises(ParameterError, match="ambiguous"):
        find_node(rules, "KSampler", None, "KSampler.seed")
    assert find_node(rules, "KSampler", 1, "KSampler[1].seed") == "8"


def test_quoted_selector_matches_titles_only(rules):
    """'"KSampler"' is the node titled KSampler, not every KSampler."""
    assert find_node(rules, "KSampler", None, '"KSampler".seed', titles_only=True) == "6"
    target = resolve_address(parse_address('"Refiner"[0].cfg'), rules, None)
    assert isinstance(target, Target) and target.node_id == "8"


def test_ambiguous_class_lists_every_candidate(rules, schema):
    """Two nodes of a class make the address ambiguous; the error lists indexed choices."""
    with pytest.raises(ParameterError) as caught:
        resolve_address(parse_address("CLIPTextEncode.text"), rules, schema)
    problem = caught.value.problems[0]
    assert problem.kind == "ambiguous_address"
    assert "CLIPTextEncode[0] = node 3 (Positive Prompt)" in problem.fix
    assert "CLIPTextEncode[1] = node 4 (Negative Prompt)" in problem.fix


def test_index_out_of_range_lists_the_matches(rules, schema):
    """KSampler[5] says how many KSamplers there are."""
    with pytest.raises(ParameterError, match="2 node"):
        resolve_address(parse_address("CLIPTextEncode[5].text"), rules, schema)


def test_unknown_node_suggests_close_names(rules, schema):
    """A misspelt title gets a did-you-mean."""
    with pytest.raises(ParameterError) as caught:
        resolve_address(parse_address("Positve Prompt.text"), rules, schema)
    assert "'Positive Prompt'" in caught.value.problems[0].fix


def test_unknown_input_lists_the_node_inputs(rules, schema):
    """An input the node does not have gets a did-you-mean and the input list."""
    with pytest.raises(ParameterError) as caught:
        resolve_address(parse_address("3.txt"), rules, schema)
    problem = caught.value.problems[0]
    assert "has no input 'txt'" in problem.message and "'text'" in problem.fix


def test_malformed_addresses_are_rejected(rules, schema):
    """An address without an input, or a quoted title without '.input', is an error."""
    for text in ("3", '"Positive Prompt"', "3."):
        with pytest.raises(ParameterError):
            resolve_address(parse_address(text), rules, schema)


def test_set_changes_only_the_addressed_input(rules, schema):
    """--set writes the coerced value into the prompt."""
    prompt = _set(rules, schema, "KSampler[1].steps=12", '"Positive Prompt".text=a blue fox')
    assert prompt["8"]["inputs"]["steps"] == 12
    assert prompt["6"]["inputs"]["steps"] == 20
    assert prompt["3"]["inputs"]["text"] == "a blue fox"


def test_json_pointer_can_set_anything(rules, schema):
    """A pointer outside inputs sets raw JSON (here the title)."""
    prompt = _set(rules, schema, "/8/_meta/title=Second pass")
    assert prompt["8"]["_meta"]["title"] == "Second pass"


def test_json_pointer_to_nowhere_is_an_error(rules, schema):
    """A pointer through a missing key is reported, not created."""
    with pytest.raises(ParameterError, match="no '99'"):
        _set(rules, schema, "/99/inputs/x=1")


def test_set_needs_an_address(rules, schema):
    """--set seed=5 points to --param."""
    with pytest.raises(ParameterError) as caught:
        _set(rules, schema, "seed=5")
    assert "--set seed" in caught.value.problems[0].message


def test_set_refuses_a_value_for_a_link_input(rules, schema):
    """Putting a value into a MODEL input is refused."""
    with pytest.raises(ParameterError, match="takes a link"):
        _set(rules, schema, "6.model=3")
