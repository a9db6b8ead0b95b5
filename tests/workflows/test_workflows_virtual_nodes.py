"""Frontend-only nodes of popular packs in UI-format workflows: KJNodes' SetNode/GetNode, rgthree's
reroute and organising nodes — resolved or dropped the way the editor's export does."""

from __future__ import annotations

import json
from typing import Any

import pytest
from workflow_data import SEED

from comfyfarm.workflows import ConversionError, convert_ui_to_api

SEED_UI = SEED / "SD1.5_text2image_vae-ft-mse-840000.json"


def seed() -> dict[str, Any]:
    return json.loads(SEED_UI.read_text())


def node_of(ui: dict[str, Any], class_type: str) -> dict[str, Any]:
    return next(node for node in ui["nodes"] if node["type"] == class_type)


def reroute_input(ui: dict[str, Any], target_type: str, input_name: str, via: list[dict]) -> None:
    """Route the link into ``target_type.input_name`` through the node chain ``via`` (each with
    one input and one output), the way a user drags a wire through them in the editor."""
    target = node_of(ui, target_type)
    slot_index = next(i for i, s in enumerate(target["inputs"]) if s["name"] == input_name)
    link = next(link for link in ui["links"] if link[0] == target["inputs"][slot_index]["link"])
    next_id = max(link[0] for link in ui["links"]) + 1
    source, source_slot = link[1], link[2]
    for node in via:
        if node.get("inputs"):
            ui["links"].append([next_id, source, source_slot, node["id"], 0, link[5]])
            node["inputs"][0]["link"] = next_id
            next_id += 1
        source, source_slot = node["id"], 0
        ui["nodes"].append(node)
    link[1], link[2] = source, source_slot  # the last node of the chain now feeds the target


def virtual(node_id: int, type_: str, *, name: str | None = None, inputs: bool = True,
            outputs: bool = True) -> dict[str, Any]:  # fmt: skip
    return {
        "id": node_id,
        "type": type_,
        "mode": 0,
        "inputs": [{"name": "in", "type": "*", "link": None}] if inputs else [],
        "outputs": [{"name": "out", "type": "*", "links": []}] if outputs else [],
        "widgets_values": [name] if name is not None else [],
    }


def test_get_node_reads_the_source_of_the_set_node_of_its_name(schema):
    """MODEL wired through SetNode("model") and read back by a GetNode: the same prompt."""
    expected = convert_ui_to_api(seed(), schema)
    ui = seed()
    setter = virtual(100, "SetNode", name="model", outputs=False)
    getter = virtual(101, "GetNode", name="model", inputs=False)
    reroute_input(ui, "KSampler", "model", [setter, getter])
    assert convert_ui_to_api(ui, schema) == expected


def test_get_node_prefers_its_own_name_among_several_set_nodes(schema):
    """Two SetNodes with different names: the GetNode takes the one it names."""
    ui = seed()
    setter = virtual(100, "SetNode", name="model", outputs=False)
    getter = virtual(101, "GetNode", name="model", inputs=False)
    reroute_input(ui, "KSampler", "model", [setter, getter])
    decoy = virtual(102, "SetNode", name="other", outputs=False)
    ui["nodes"].append(decoy)
    prompt = convert_ui_to_api(ui, schema)
    loader = next(k for k, v in prompt.items() if v["class_type"] == "CheckpointLoaderSimple")
    sampler = next(v for v in prompt.values() if v["class_type"] == "KSampler")
    assert sampler["inputs"]["model"] == [loader, 0]


def test_get_node_without_a_set_node_is_reported_once_with_its_name(schema):
    """A GetNode whose name no SetNode sets is a conversion problem naming node and name."""
    ui = seed()
    getter = virtual(101, "GetNode", name="missing", inputs=False)
    reroute_input(ui, "KSampler", "model", [getter])
    with pytest.raises(ConversionError) as caught:
        convert_ui_to_api(ui, schema)
    [problem] = caught.value.problems
    assert problem.node_id == "101" and "'missing'" in problem.message
    assert problem.fix and "SetNode" in problem.fix


def test_rgthree_reroute_passes_its_input_through(schema):
    """rgthree's reroute is a Reroute: the prompt does not change."""
    expected = convert_ui_to_api(seed(), schema)
    ui = seed()
    reroute_input(ui, "SaveImage", "images", [virtual(100, "Reroute (rgthree)")])
    assert convert_ui_to_api(ui, schema) == expected


@pytest.mark.parametrize(
    "type_", ["Fast Groups Bypasser (rgthree)", "Fast Muter (rgthree)", "Label (rgthree)",
              "Bookmark (rgthree)", "Mute / Bypass Repeater (rgthree)"],
)  # fmt: skip
def test_rgthree_organising_nodes_are_not_sent(schema, type_):
    """Nodes that only act in the editor are dropped, not reported as uninstalled."""
    expected = convert_ui_to_api(seed(), schema)
    ui = seed()
    ui["nodes"].append(virtual(100, type_, inputs=False))
    assert convert_ui_to_api(ui, schema) == expected
