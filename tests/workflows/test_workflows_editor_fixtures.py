"""Conversion agrees exactly with the editor's own export (fixtures made by tools/editor_oracle).

``editor_fixtures/`` holds every template of comfyui-workflow-templates 0.1.95 (``*.ui.json``) and
what the real editor, comfyui-frontend-package 1.27.10 running headless, exported for it with
``app.graphToPrompt()`` (``*.api.json``), plus the editor's widget list of every node class and
its titles for classes without a display name. VERSIONS.md says how they were made.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from comfyfarm.workflows import ConversionError, SchemaSource, convert_ui_to_api
from comfyfarm.workflows.convert_titles import EDITOR_TITLES
from comfyfarm.workflows.widgets import BROWSER_CAPTURED, editor_widgets

FIXTURES = Path(__file__).parent / "editor_fixtures"
MANIFEST: dict[str, dict[str, Any]] = json.loads((FIXTURES / "MANIFEST.json").read_text())
EXPORTED = sorted(name for name, entry in MANIFEST.items() if entry["editor"] == "ok")
INCOMPLETE = sorted(name for name, entry in MANIFEST.items() if entry["editor"] == "incomplete")
CASES = FIXTURES / "cases"  # hand-made edge cases (tools/editor_oracle/cases), same oracle
CASE_NAMES = sorted(json.loads((CASES / "MANIFEST.json").read_text()))
# Our name for the editor's "Auto-refresh after generation" toggle of remote combos.
EDITOR_NAMES = {"auto_refresh": "Auto-refresh after generation"}


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def test_the_fixtures_cover_every_template():
    """Each template has its UI file, and an API export unless the editor's was incomplete."""
    assert len(MANIFEST) == 172
    for name in MANIFEST:
        assert (FIXTURES / f"{name}.ui.json").is_file(), name
        assert (FIXTURES / f"{name}.api.json").is_file() == (name in EXPORTED), name


@pytest.mark.parametrize("name", EXPORTED)
def test_template_converts_exactly_as_the_editor_exports_it(schema, name):
    """Our prompt equals the editor's export: same nodes, inputs, links, values and _meta."""
    assert convert_ui_to_api(load(f"{name}.ui.json"), schema) == load(f"{name}.api.json")


@pytest.mark.parametrize("name", [n for n in CASE_NAMES if not n.startswith("refuse_")])
def test_edge_case_converts_exactly_as_the_editor_exports_it(schema, name):
    """Subgraph and widget edge cases: our prompt equals what the editor exported for them."""
    ui = json.loads((CASES / f"{name}.ui.json").read_text())
    assert convert_ui_to_api(ui, schema) == json.loads((CASES / f"{name}.api.json").read_text())


# Why each refuse_ case is refused, and what the editor's recorded export shows it would do.
REFUSED_BECAUSE = {
    "refuse_groupnode_misnamed_input": "the editor would drop its link",
    "refuse_subgraph_nested_before_definition": "would send its own inner value",
    "refuse_subgraph_shared_conflict": "would send 'a castle on a hill' to all",
    "refuse_subgraph_two_instances_differ": "would send 'ugly' to all",
}
EDITOR_SENT = {
    "refuse_groupnode_misnamed_input": lambda out: "clip" not in out["5:1"]["inputs"],
    "refuse_subgraph_nested_before_definition": lambda out: (
        out["3:20:10"]["inputs"]["text"] == "inner default text"
    ),
    "refuse_subgraph_shared_conflict": lambda out: (
        out["2:10"]["inputs"]["text"] == out["3:20:10"]["inputs"]["text"] == "a castle on a hill"
    ),
    "refuse_subgraph_two_instances_differ": lambda out: (
        out["2:10"]["inputs"]["text"] == out["3:10"]["inputs"]["text"] == "ugly"
    ),
}


def test_every_refuse_case_says_why():
    """Each hand-made case we refuse has its reason and the editor's behaviour written down."""
    assert (
        set(REFUSED_BECAUSE)
        == set(EDITOR_SENT)
        == {n for n in CASE_NAMES if n.startswith("refuse_")}
    )


@pytest.mark.parametrize("name", sorted(REFUSED_BECAUSE))
def test_edge_case_the_editor_exports_wrongly_is_refused(schema, name):
    """Where the editor silently drops a link or sends one instance's promoted value for
    another's (its recorded export shows it), we refuse, naming the node and the reason."""
    ui = json.loads((CASES / f"{name}.ui.json").read_text())
    assert EDITOR_SENT[name](json.loads((CASES / f"{name}.api.json").read_text()))
    with pytest.raises(ConversionError) as caught:
        convert_ui_to_api(ui, schema)
    (problem,) = caught.value.problems
    assert problem.kind == "conversion" and problem.node_id and problem.fix
    assert REFUSED_BECAUSE[name] in problem.message


@pytest.mark.parametrize("name", INCOMPLETE)
def test_template_the_editor_cannot_export_is_refused_naming_its_nodes(schema, name):
    """Where the editor exports nodes without a class (types it lacks), we refuse, naming each."""
    with pytest.raises(ConversionError) as caught:
        convert_ui_to_api(load(f"{name}.ui.json"), schema)
    problems = caught.value.problems
    assert {p.node_id for p in problems} == set(MANIFEST[name]["nodes_without_class_type"])
    assert all(p.kind == "unknown_node_type" and p.class_type in p.message for p in problems)


def test_widget_layout_of_every_class_is_the_editors(schema):
    """For all node classes, our widgets take the editor's widgets_values slots in its order
    (trailing unsent buttons aside) and we send exactly the widgets it sends."""
    editor: dict[str, list[list[Any]]] = load("editor_widgets.json")
    wrong = {}
    for class_type in schema.class_types:
        if class_type in BROWSER_CAPTURED:
            continue
        theirs = editor[class_type]
        ours = editor_widgets(schema.node(class_type))
        slots = [EDITOR_NAMES.get(w.name, w.name) for w in ours if w.slot]
        their_slots = [w for w in theirs if w[2]]
        trailing_sent = [w for w in their_slots[len(slots) :] if w[3]]
        sent = {w.name for w in ours if w.sent}
        their_sent = {w[0] for w in theirs if w[3]}
        if (
            [w[0] for w in their_slots[: len(slots)]] != slots
            or trailing_sent
            or sent != their_sent
        ):
            wrong[class_type] = (slots, sent, theirs)
    assert not wrong


def test_titles_of_unnamed_classes_are_the_editors():
    """Classes /object_info gives no display_name get the editor's own English title."""
    assert load("editor_titles.json") == EDITOR_TITLES


def test_subgraph_inputs_are_wired_by_name_not_by_saved_position(schema):
    """An instance saved before its subgraph gained inputs (seed, sampler, scheduler) still
    feeds steps from steps' source and cfg from cfg's, and the seed from its widget."""
    prompt = convert_ui_to_api(load("video_wan2_2_14B_s2v.ui.json"), schema)
    sampler = prompt["79:77"]["inputs"]
    assert sampler["steps"] == ["103", 0]  # PrimitiveInt "steps"
    assert sampler["cfg"] == ["105", 0]  # PrimitiveFloat "cfg"
    assert sampler["seed"] == 1  # the instance's promoted seed widget
    assert prompt["79:76"]["inputs"]["length"] == ["104", 0]


def test_inner_link_from_an_input_the_definition_lacks_is_refused(schema, data):
    """A link inside a subgraph from a definition input slot that does not exist is an error
    naming the instance, never a guess."""
    ui = data("subgraph_ui.json")
    definition = ui["definitions"]["subgraphs"][0]
    links = definition["links"]
    first = links[0]
    bad = 99
    if isinstance(first, dict):
        first = {**first, "id": 999, "origin_id": -10, "origin_slot": bad}
    else:
        first = [999, -10, bad, *first[3:]]
    links.append(first)
    with pytest.raises(ConversionError) as caught:
        convert_ui_to_api(ui, schema)
    problem = caught.value.problems[0]
    assert problem.node_id in {"2", "3"} and problem.kind == "conversion"
    assert f"input slot {bad}" in problem.message


def _single_node(class_type: str, values: list[Any], **extra: Any) -> dict[str, Any]:
    node = {"id": 1, "type": class_type, "mode": 0, "inputs": [], "outputs": []}
    node.update(widgets_values=values, **extra)
    return {"nodes": [node], "links": []}


def test_explicit_no_control_on_a_seed_takes_one_slot(schema):
    """A seed whose spec says control_after_generate: false has no control slot (Moonvalley)."""
    values = ["a horse", "blurry", 5, 40, "Pose Transfer", 80]
    ui = _single_node("MoonvalleyVideo2VideoNode", values)
    inputs = convert_ui_to_api(ui, schema)["1"]["inputs"]
    assert (inputs["seed"], inputs["steps"], inputs["control_type"]) == (5, 40, "Pose Transfer")
    assert inputs["motion_intensity"] == 80


def test_control_widget_of_an_input_not_called_seed_takes_its_slot():
    """Any widget whose spec asks for control_after_generate is followed by a control slot."""
    info = {
        "Picker": {
            "input": {
                "required": {
                    "style": [["a", "b", "c"], {"control_after_generate": True}],
                    "steps": ["INT", {"default": 1}],
                }
            },
            "input_order": {"required": ["style", "steps"]},
            "output": [],
            "output_node": True,
            "display_name": "Picker",
        }
    }
    ui = _single_node("Picker", ["b", "randomize", 9])
    prompt = convert_ui_to_api(ui, SchemaSource.from_object_info(info))
    assert prompt["1"]["inputs"] == {"style": "b", "steps": 9}


MP3 = {"filename_prefix": "audio/x", "quality": "V0", "audioUI": ""}
OUTPUT_IMAGE = {"image": "a.png [output]", "refresh": "again"}
OWN_WIDGET_CASES = [
    ("LoadAudio", ["song.flac", None, None], {"audio": "song.flac", "audioUI": ""}),
    ("SaveAudioMP3", ["audio/x", "V0"], MP3),
    ("PreviewAny", [], {"preview": ""}),
    ("SaveGLB", ["mesh/x", ""], {"filename_prefix": "mesh/x", "image": ""}),
    ("LoadImageOutput", ["a.png [output]", False, "again", "image"], OUTPUT_IMAGE),
    ("RecordAudio", ["take1.wav", ""], {"audio": ""}),
    ("Preview3D", ["model.glb", "shot.png"], {"model_file": "model.glb", "image": ""}),
]


@pytest.mark.parametrize(("class_type", "values", "expected"), OWN_WIDGET_CASES)
def test_editor_own_widgets_are_sent_with_their_values(schema, class_type, values, expected):
    """Widgets the editor adds itself are sent: its own ones with their own value (checked in
    the editor: a recorder or 3D preview sends "" whatever its slot holds), a remote combo's
    refresh button with its slot's."""
    assert convert_ui_to_api(_single_node(class_type, values), schema)["1"]["inputs"] == expected


def test_node_whose_widget_the_browser_fills_at_export_is_refused(schema):
    """A webcam capture cannot be exported without the browser: a clear error, not a guess."""
    with pytest.raises(ConversionError) as caught:
        convert_ui_to_api(_single_node("WebcamCapture", ["", 640, 480, False]), schema)
    problem = caught.value.problems[0]
    assert (problem.node_id, problem.class_type) == ("1", "WebcamCapture")
    assert "camera" in problem.message and problem.fix


def test_unnamed_class_gets_the_editors_title(schema):
    """ImageScaleToTotalPixels has no display_name in /object_info; the editor calls it so."""
    ui = _single_node("ImageScaleToTotalPixels", ["nearest-exact", 1.0])
    prompt = convert_ui_to_api(ui, schema)
    assert prompt["1"]["_meta"] == {"title": "Scale Image to Total Pixels"}


def test_instance_saved_with_its_inputs_reordered_is_wired_by_name(schema, data):
    """Saved instance inputs in another order than the definition's still feed the inner
    input of the same name (the editor matches them by name)."""
    ui = data("subgraph_ui.json")
    expected = convert_ui_to_api(ui, schema)
    instance = ui["nodes"][1]
    instance["inputs"] = list(reversed(instance["inputs"]))
    assert convert_ui_to_api(ui, schema) == expected


def test_subgraph_with_two_inputs_of_one_name_is_refused(schema, data):
    """Two definition inputs named alike cannot be told apart: an error naming the instance."""
    ui = data("subgraph_ui.json")
    ui["definitions"]["subgraphs"][0]["inputs"][1]["name"] = "clip"
    with pytest.raises(ConversionError) as caught:
        convert_ui_to_api(ui, schema)
    problem = caught.value.problems[0]
    assert problem.node_id == "2" and "2 inputs named 'clip'" in problem.message


def test_types_the_editor_renames_on_load_are_exported_renamed(schema):
    """T2IAdapterLoader loads as ControlNetLoader in the editor, and is exported so."""
    prompt = convert_ui_to_api(_single_node("T2IAdapterLoader", ["x.safetensors"]), schema)
    assert prompt["1"] == {
        "inputs": {"control_net_name": "x.safetensors"},
        "class_type": "ControlNetLoader",
        "_meta": {"title": "Load ControlNet Model"},
    }
