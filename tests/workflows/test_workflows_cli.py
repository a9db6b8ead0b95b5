"""The convert and validate commands (comfyfarm/commands/convert.py, validate.py)."""

from __future__ import annotations

import json

import pytest
from workflow_data import OBJECT_INFO, SEED

from comfyfarm.cli import main

UI = str(SEED / "SD1.5_text2image_vae-ft-mse-840000.json")
OI = ["--object-info", str(OBJECT_INFO)]


@pytest.fixture(autouse=True)
def _no_comfy_url(monkeypatch):
    monkeypatch.delenv("COMFYFARM_COMFY_URL", raising=False)


def test_convert_prints_the_api_prompt(capsys):
    """convert writes the API prompt to stdout."""
    assert main(["convert", UI, *OI]) == 0
    prompt = json.loads(capsys.readouterr().out)
    assert prompt == json.loads((SEED / "SD1.5_text2image_API.json").read_text())


def test_convert_writes_the_output_file(tmp_path, capsys):
    """-o writes the file and says so on stderr."""
    target = tmp_path / "api.json"
    assert main(["convert", UI, *OI, "-o", str(target)]) == 0
    assert json.loads(target.read_text())["3"]["class_type"] == "KSampler"
    assert "wrote" in capsys.readouterr().err


def test_convert_reports_unknown_node_types(tmp_path, capsys):
    """A workflow with a missing custom node exits 1 and names node and type."""
    ui = json.loads((SEED / "SD1.5_text2image_vae-ft-mse-840000.json").read_text())
    ui["nodes"][0]["type"] = "FancyDecode"
    path = tmp_path / "ui.json"
    path.write_text(json.dumps(ui))
    assert main(["convert", str(path), *OI]) == 2
    err = capsys.readouterr().err
    assert "node 8" in err and "FancyDecode" in err and "install the custom node" in err


def test_convert_needs_a_schema_source(capsys):
    """Without --comfy-url or --object-info the command says which to give (exit 2)."""
    assert main(["convert", UI]) == 2
    assert "--comfy-url URL or --object-info FILE" in capsys.readouterr().err
    assert main(["validate", "empty_invert"]) == 2


def test_convert_of_an_api_file_passes_it_through(capsys):
    """An API-format file is printed as is, with a note."""
    assert main(["convert", "empty_invert"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["2"]["class_type"] == "ImageInvert"
    assert "already in API format" in captured.err


def test_convert_of_a_broken_file_reports_line_and_column(tmp_path, capsys):
    """A broken JSON file exits 1 with its line and column."""
    path = tmp_path / "x.json"
    path.write_text("{\n  oops\n}")
    assert main(["convert", str(path), *OI]) == 2
    assert "line 2, column 3" in capsys.readouterr().err


def test_validate_valid_workflow_exits_zero(capsys):
    """A valid workflow prints one OK line and exits 0."""
    assert main(["validate", "empty_invert", *OI]) == 0
    assert capsys.readouterr().out.strip() == "empty_invert: valid (1 job, 3 nodes)"


def test_validate_invalid_workflow_lists_problems(capsys):
    """Missing models exit 1 with one line per problem."""
    assert main(["validate", UI, *OI]) == 2
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].endswith("2 problems")
    assert any("models/checkpoints" in line for line in lines[1:])
    assert any("models/vae" in line for line in lines[1:])


def test_validate_json_report(capsys):
    """--json gives a machine-readable report."""
    assert main(["validate", UI, *OI, "--json"]) == 2
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] is False and report["error"] == "PromptInvalid"
    assert {p["node_id"] for p in report["problems"]} == {"4", "10"}


def test_validate_applies_params_and_sweeps(capsys):
    """--param/--set/--sweep are checked like submit would apply them."""
    args = [
        "validate",
        "empty_invert",
        *OI,
        "--param",
        "color=255",
        "--sweep",
        "width=64,128",
        "--set",
        "SaveImage.filename_prefix=x",
    ]
    assert main(args) == 0
    assert "(2 jobs, 3 nodes)" in capsys.readouterr().out


def test_validate_reports_bad_params(capsys):
    """An out-of-range parameter exits 1 naming the parameter and the limit."""
    assert main(["validate", "empty_invert", *OI, "--param", "width=0"]) == 2
    out = capsys.readouterr().out
    assert "input width: 0 is smaller than the minimum 1" in out


def test_validate_lists_params(capsys):
    """--list-params shows names, targets and help."""
    assert main(["validate", "sd15_text2image", *OI, "--list-params"]) == 0
    out = capsys.readouterr().out
    assert "sd15_text2image.params.toml" in out
    assert any(line.split()[:2] == ["prompt", "6.text"] for line in out.splitlines()[1:])
