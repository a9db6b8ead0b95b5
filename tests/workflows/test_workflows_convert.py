"""UI format -> API format conversion (workflows.convert)."""

from __future__ import annotations

import copy
import json

import pytest
from workflow_data import PROTOCOL, SEED

from comfyfarm.workflows import ConversionError, SchemaSource, convert_ui_to_api, load_workflow


def test_seed_workflow_converts_to_exactly_the_seed_api_prompt(schema):
    """The seed's SD1.5 UI workflow gives the inputs and class types of its API export."""
    ui = json.loads((SEED / "SD1.5_text2image_vae-ft-mse-840000.json").read_text())
    expected = json.loads((SEED / "SD1.5_text2image_API.json").read_text())
    assert convert_ui_to_api(ui, schema) == expected


def test_trace_15_converts_like_the_editor(schema):
    """default.json of the templates gives the recorded prompt, key order included."""
    trace = json.loads((PROTOCOL / "15_ui_to_api_sd15_text2image.json").read_text())
    prompt = convert_ui_to_api(trace["ui_workflow"], schema)
    assert prompt == trace["api_prompt"]
    assert list(prompt) == list(trace["api_prompt"])
    assert list(prompt["3"]["inputs"]) == list(trace["api_prompt"]["3"]["inputs"])


def test_trace_15_converts_with_only_its_recorded_schema_entries():
    """The object_info entries recorded with trace 15 are enough to convert it."""
    trace = json.loads((PROTOCOL / "15_ui_to_api_sd15_text2image.json").read_text())
    schema = SchemaSource.from_object_info(trace["object_info_entries"])
    assert convert_ui_to_api(trace["ui_workflow"], schema) == trace["api_prompt"]


def test_rules_fixture_resolves_reroutes_primitives_muted_and_bypassed_nodes(schema, data):
    """Reroutes, primitives, mute, bypass, notes, converted widgets and dict values all resolve."""
    assert convert_ui_to_api(data("rules_ui.json"), schema) == data("rules.api.json")


def test_reroute_chains_resolve_to_the_real_source(schema, data):
    """A link through two reroutes points at the checkpoint loader itself."""
    prompt = convert_ui_to_api(data("rules_ui.json"), schema)
    assert prompt["8"]["inputs"]["model"] == ["1", 0]
    assert not {"2", "20", "21"} & set(prompt)


def test_primitive_value_replaces_the_converted_widget(schema, data):
    """A PrimitiveNode's value wins over the target's own (stale) widget value."""
    prompt = convert_ui_to_api(data("rules_ui.json"), schema)
    assert prompt["3"]["inputs"]["text"] == "a red fox"
    assert prompt["6"]["inputs"]["seed"] == 777
    assert not {"10", "11"} & set(prompt)


def test_bypassed_node_passes_its_matching_input_through(schema, data):
    """The refiner's latent comes from the first sampler, around the bypassed upscale."""
    prompt = convert_ui_to_api(data("rules_ui.json"), schema)
    assert "7" not in prompt
    assert prompt["8"]["inputs"]["latent_image"] == ["6", 0]


def test_muted_nodes_are_dropped_with_the_inputs_they_feed(schema, data):
    """Muted nodes are not sent, and an input fed by one disappears."""
    prompt = convert_ui_to_api(data("rules_ui.json"), schema)
    assert "13" not in prompt and "14" not in prompt
    assert "images" not in prompt["15"]["inputs"]


def test_dict_widgets_values_are_read_by_name(schema, data):
    """widgets_values given as an object are used by input name."""
    prompt = convert_ui_to_api(data("rules_ui.json"), schema)
    assert prompt["18"]["inputs"] == {"width": 64, "height": 32, "batch_size": 2, "color": 255}


def test_missing_widgets_values_take_the_schema_default(schema, data):
    """A node saved without widgets_values gets its defaults (SaveImage prefix 'ComfyUI')."""
    prompt = convert_ui_to_api(data("rules_ui.json"), schema)
    assert prompt["19"]["inputs"]["filename_prefix"] == "ComfyUI"


def test_subgraphs_expand_with_path_ids_and_promoted_widgets(schema, data):
    """Subgraph instances expand to 'instance:inner' ids; promoted widget values apply."""
    assert convert_ui_to_api(data("subgraph_ui.json"), schema) == data("subgraph.api.json")


def test_nested_subgraph_ids_carry_the_whole_path(schema, data):
    """A subgraph inside a subgraph gives ids like 3:20:10, and bypass works inside."""
    prompt = convert_ui_to_api(data("subgraph_ui.json"), schema)
    assert prompt["3:20:10"]["inputs"]["text"] == "ugly, blurry"
    assert prompt["5"]["inputs"]["negative"] == ["3:20:10", 0]
    assert "3:21" not in prompt


def test_unlinked_subgraph_input_without_widget_value_keeps_the_inner_value(schema, data):
    """An instance that does not set its promoted widget leaves the inner widget's value."""
    ui = data("subgraph_ui.json")
    ui["nodes"][1]["widgets_values"] = []
    prompt = convert_ui_to_api(ui, schema)
    assert prompt["2:10"]["inputs"]["text"] == "inner default text"


def test_muted_subgraph_instance_mutes_its_inner_nodes(schema, data):
    """Muting a subgraph instance drops its inner nodes and what they fed."""
    ui = data("subgraph_ui.json")
    ui["nodes"][2]["mode"] = 2
    prompt = convert_ui_to_api(ui, schema)
    assert not [node_id for node_id in prompt if node_id.startswith("3:")]
    assert "negative" not in prompt["5"]["inputs"]


def test_bypassed_subgraph_instance_passes_a_matching_input_through(schema, data):
    """A bypassed instance forwards its input of the consumer's type (here none: dropped)."""
    ui = data("subgraph_ui.json")
    ui["nodes"][1]["mode"] = 4
    prompt = convert_ui_to_api(ui, schema)
    assert "2:10" not in prompt and "positive" not in prompt["5"]["inputs"]


def test_subgraph_that_contains_itself_is_an_error(schema, data):
    """A recursive subgraph definition fails instead of looping."""
    ui = data("subgraph_ui.json")
    inner = ui["definitions"]["subgraphs"][0]
    inner["nodes"].append({"id": 12, "type": inner["id"], "mode": 0, "inputs": [], "outputs": []})
    with pytest.raises(ConversionError, match="contains itself"):
        convert_ui_to_api(ui, schema)


def test_group_nodes_expand_into_their_inner_nodes(schema, data):
    """Legacy group nodes expand to 'group:index' ids with the instance's widget values."""
    assert convert_ui_to_api(data("groupnode_ui.json"), schema) == data("groupnode.api.json")


def test_group_node_internal_links_and_hidden_outputs(schema, data):
    """An inner link stays inside; the group's only output is the last inner node's."""
    prompt = convert_ui_to_api(data("groupnode_ui.json"), schema)
    assert prompt["6:1"]["inputs"]["samples"] == ["6:0", 0]
    assert prompt["7"]["inputs"]["latent_image"] == ["6:1", 0]


def test_group_node_without_definition_is_reported(schema, data):
    """A group node whose definition is missing is named in the error."""
    ui = data("groupnode_ui.json")
    del ui["extra"]["groupNodes"]["Latent"]
    with pytest.raises(ConversionError) as caught:
        convert_ui_to_api(ui, schema)
    assert caught.value.problems[0].node_id == "6"
    assert "Latent" in str(caught.value)


def test_object_form_links_convert_like_array_links(schema):
    """Links written as {id, origin_id, ...} objects give the same prompt."""
    ui = json.loads((SEED / "SD1.5_text2image_vae-ft-mse-840000.json").read_text())
    expected = convert_ui_to_api(ui, schema)
    keys = ("id", "origin_id", "origin_slot", "target_id", "target_slot", "type")
    ui["links"] = [dict(zip(keys, link, strict=True)) for link in ui["links"]]
    assert convert_ui_to_api(ui, schema) == expected


def test_unknown_node_type_names_node_type_and_fix(schema):
    """Every unknown node type is reported with its node id and an install hint."""
    ui = json.loads((SEED / "SD1.5_text2image_vae-ft-mse-840000.json").read_text())
    ui["nodes"][0]["type"] = "VAEDecodeTiledPlus"
    ui["nodes"][1]["type"] = "KSamplr"
    with pytest.raises(ConversionError) as caught:
        convert_ui_to_api(ui, schema)
    problems = {p.node_id: p for p in caught.value.problems}
    assert set(problems) == {"8", "3"}
    assert problems["8"].class_type == "VAEDecodeTiledPlus"
    assert "install the custom node that provides VAEDecodeTiledPlus" in problems["8"].fix
    assert "did you mean 'KSampler'" in problems["3"].fix


def test_unknown_type_of_a_muted_node_is_not_an_error(schema):
    """A muted custom node is never sent, so its type need not exist."""
    ui = json.loads((SEED / "SD1.5_text2image_vae-ft-mse-840000.json").read_text())
    ui["nodes"].append({"id": 50, "type": "SomeCustomNode", "mode": 2, "inputs": [], "outputs": []})
    assert "50" not in convert_ui_to_api(ui, schema)


def test_old_boolean_control_value_and_trailing_upload_slot(schema):
    """An old 'true' control slot and LoadImage's upload-button slot are never sent."""
    ui = {
        "nodes": [
            {"id": 1, "type": "LoadImage", "mode": 0, "widgets_values": ["cat.png", "image"]},
            {
                "id": 2,
                "type": "KSampler",
                "mode": 0,
                "widgets_values": [7, True, 30, 5.5, "euler", "normal", 0.8],
            },
        ],
        "links": [],
    }
    prompt = convert_ui_to_api(ui, schema)
    assert prompt["1"]["inputs"] == {"image": "cat.png"}
    assert prompt["2"]["inputs"] == {
        "seed": 7,
        "steps": 30,
        "cfg": 5.5,
        "sampler_name": "euler",
        "scheduler": "normal",
        "denoise": 0.8,
    }


def test_array_widget_values_are_wrapped(object_info):
    """A list value (a multiselect combo) is sent as {"__value__": [...]}, not as a link."""
    info = copy.deepcopy(object_info)
    info["TagPicker"] = {
        "input": {
            "required": {
                "tags": ["COMBO", {"options": ["a", "b", "c"], "multiselect": True}],
                "count": ["INT", {"default": 1, "min": 1, "max": 9}],
            }
        },
        "input_order": {"required": ["tags", "count"]},
        "output": ["STRING"],
        "output_name": ["STRING"],
        "name": "TagPicker",
        "display_name": "Tag Picker",
        "output_node": False,
    }
    ui = {
        "nodes": [{"id": 4, "type": "TagPicker", "mode": 0, "widgets_values": [["a", "c"], 3]}],
        "links": [],
    }
    prompt = convert_ui_to_api(ui, SchemaSource.from_object_info(info))
    assert prompt["4"]["inputs"] == {"tags": {"__value__": ["a", "c"]}, "count": 3}


def test_reroute_loop_is_a_conversion_error(schema):
    """Two reroutes feeding each other fail with a cycle message instead of recursing."""
    ui = {
        "nodes": [
            {
                "id": 1,
                "type": "Reroute",
                "mode": 0,
                "inputs": [{"name": "", "type": "*", "link": 2}],
                "outputs": [{"name": "", "type": "IMAGE", "links": [1]}],
            },
            {
                "id": 2,
                "type": "Reroute",
                "mode": 0,
                "inputs": [{"name": "", "type": "*", "link": 1}],
                "outputs": [{"name": "", "type": "IMAGE", "links": [2, 3]}],
            },
            {
                "id": 3,
                "type": "SaveImage",
                "mode": 0,
                "inputs": [{"name": "images", "type": "IMAGE", "link": 3}],
                "widgets_values": ["x"],
            },
        ],
        "links": [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 1, 0, "IMAGE"], [3, 2, 0, 3, 0, "IMAGE"]],
    }
    with pytest.raises(ConversionError, match="cycle"):
        convert_ui_to_api(ui, schema)


def test_dangling_link_ids_are_treated_as_unconnected(schema):
    """A socket naming a link that no longer exists converts as unconnected."""
    ui = {
        "nodes": [
            {
                "id": 3,
                "type": "SaveImage",
                "mode": 0,
                "inputs": [{"name": "images", "type": "IMAGE", "link": 99}],
                "widgets_values": ["x"],
            }
        ],
        "links": [],
    }
    assert convert_ui_to_api(ui, schema) == {
        "3": {
            "inputs": {"filename_prefix": "x"},
            "class_type": "SaveImage",
            "_meta": {"title": "Save Image"},
        }
    }


def test_library_ui_workflows_match_their_api_twins(schema):
    """Every shipped UI workflow converts to its shipped API file."""
    for name in ("sd15_text2image", "empty_invert"):
        ui = load_workflow(f"{name}.json")
        api = load_workflow(f"{name}.api.json")
        assert ui.format == "ui" and api.format == "api"
        assert ui.to_api(schema) == api.data, name


def test_proxy_widgets_promote_inner_widget_values(schema, data):
    """properties.proxyWidgets [[inner id, widget]] sets that inner widget from the instance's
    widgets_values at the same position (the editor's newer promotion)."""
    ui = data("subgraph_ui.json")
    instance = ui["nodes"][1]
    instance["inputs"] = [slot for slot in instance["inputs"] if slot["name"] != "text"]
    instance["properties"] = {"proxyWidgets": [["10", "text"]]}
    instance["widgets_values"] = ["a proxied castle"]
    assert convert_ui_to_api(ui, schema)["2:10"]["inputs"]["text"] == "a proxied castle"


def test_proxy_widget_of_the_subgraph_input_fills_the_unlinked_input(schema, data):
    """A proxyWidgets entry with target -1 names the instance's own input: its value feeds it."""
    ui = data("subgraph_ui.json")
    instance = ui["nodes"][1]
    instance["properties"] = {"proxyWidgets": [["-1", "text"]]}
    instance["widgets_values"] = ["through the input"]
    assert convert_ui_to_api(ui, schema)["2:10"]["inputs"]["text"] == "through the input"


def test_an_outer_instance_promotion_wins_over_the_inner_one(schema, data):
    """Nested subgraphs: the enclosing instance's proxied value reaches the innermost widget."""
    ui = data("subgraph_ui.json")
    negative = next(d for d in ui["definitions"]["subgraphs"] if d["name"] == "Negative")
    nested = negative["nodes"][0]  # node 20, inside "Negative"
    nested["properties"] = {"proxyWidgets": [["10", "text"]]}
    nested["widgets_values"] = ["inner choice"]
    assert convert_ui_to_api(ui, schema)["3:20:10"]["inputs"]["text"] == "inner choice"
    outer = ui["nodes"][2]
    outer["properties"] = {"proxyWidgets": [["20", "text"]]}
    outer["widgets_values"] = ["outer choice"]
    assert convert_ui_to_api(ui, schema)["3:20:10"]["inputs"]["text"] == "outer choice"
