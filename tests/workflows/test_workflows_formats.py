"""Loading workflow files and telling API format from UI format (workflows.formats, library)."""

from __future__ import annotations

import json
import zlib

import pytest
from workflow_data import SEED

from comfyfarm.workflows import (
    WorkflowError,
    WorkflowFormatError,
    WorkflowNotFound,
    detect_format,
    find_workflow,
    list_workflows,
    load_workflow,
)


def test_api_format_is_detected():
    """An object of node id -> {class_type, inputs} is API format."""
    assert load_workflow(SEED / "SD1.5_text2image_API.json").format == "api"


def test_ui_format_is_detected():
    """An object with nodes and links is UI format."""
    workflow = load_workflow(SEED / "SD1.5_text2image_vae-ft-mse-840000.json")
    assert workflow.format == "ui"
    assert workflow.name == "SD1.5_text2image_vae-ft-mse-840000"


def test_saved_request_body_is_unwrapped():
    """{"prompt": {...}, "client_id": ...} (a saved POST body) loads as its prompt."""
    prompt = json.loads((SEED / "SD1.5_text2image_API.json").read_text())
    workflow = load_workflow({"prompt": prompt, "client_id": "x"})
    assert workflow.format == "api" and workflow.data == prompt


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ([1, 2], "got a JSON array"),
        ({}, "empty JSON object"),
        ({"foo": 1, "3": {"class_type": "X", "inputs": {}}}, "entries that are not nodes: 'foo'"),
        ({"nodes": {}, "links": []}, "'nodes' is not a list"),
    ],
)
def test_neither_format_says_why(data, reason):
    """Data that is neither format is rejected with the reason."""
    with pytest.raises(WorkflowFormatError, match=reason):
        detect_format(data, source="x.json")


def test_not_json_reports_line_and_column(tmp_path):
    """A broken JSON file names the line and column of the error."""
    path = tmp_path / "broken.json"
    path.write_text('{\n  "1": {"class_type": "SaveImage",\n  "inputs": {}\n')
    with pytest.raises(WorkflowFormatError) as caught:
        load_workflow(path)
    error = caught.value
    assert (error.line, error.column) == (4, 1)
    assert "line 4, column 1" in str(error) and "broken.json" in str(error)


def test_binary_file_is_a_format_error(tmp_path):
    """A file that is not UTF-8 text is a clear format error."""
    path = tmp_path / "x.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(WorkflowFormatError, match="not UTF-8"):
        load_workflow(path)


def _png_with_text(chunks: dict[str, str], itxt: bool = False) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body).to_bytes(4, "big")
        return len(body).to_bytes(4, "big") + kind + body + crc

    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", b"\x00" * 13)
    for key, value in chunks.items():
        if itxt:
            body = key.encode() + b"\x00\x01\x00\x00\x00" + zlib.compress(value.encode())
            data += chunk(b"iTXt", body)
        else:
            data += chunk(b"tEXt", key.encode() + b"\x00" + value.encode())
    return data + chunk(b"IEND", b"")


@pytest.mark.parametrize("itxt", [False, True])
def test_png_written_by_comfyui_loads_its_prompt(tmp_path, itxt):
    """A ComfyUI PNG's embedded prompt (tEXt or compressed iTXt) is loaded."""
    prompt = (SEED / "SD1.5_text2image_API.json").read_text()
    path = tmp_path / "ComfyUI_00001_.png"
    path.write_bytes(_png_with_text({"workflow": "{}", "prompt": prompt}, itxt=itxt))
    workflow = load_workflow(path)
    assert workflow.format == "api" and workflow.data == json.loads(prompt)


def test_png_without_workflow_is_a_format_error(tmp_path):
    """A PNG without ComfyUI chunks is rejected clearly."""
    path = tmp_path / "plain.png"
    path.write_bytes(_png_with_text({}))
    with pytest.raises(WorkflowFormatError, match="without an embedded ComfyUI workflow"):
        load_workflow(path)


def test_library_name_finds_the_api_file_first():
    """A bare library name resolves to the API-format file when both exist."""
    assert find_workflow("sd15_text2image").name == "sd15_text2image.api.json"
    assert find_workflow("sd15_text2image.json").name == "sd15_text2image.json"


def test_library_lists_every_shipped_workflow():
    """list_workflows names each shipped workflow once."""
    names = list_workflows()
    assert {
        "sd15_text2image",
        "sd15_image2image",
        "empty_invert",
        "empty_scale",
        "empty_batch",
    } <= set(names)
    assert len(names) == len(set(names))


def test_unknown_name_suggests_a_library_workflow():
    """A typo in a library name gets a did-you-mean and the list of names."""
    with pytest.raises(WorkflowNotFound) as caught:
        find_workflow("sd15_txt2image")
    assert caught.value.problems[0].fix == "did you mean 'sd15_text2image'?"
    assert "empty_invert" in str(caught.value)


def test_ui_workflow_without_schema_asks_for_one():
    """Converting a UI workflow without node schemas says which option to give."""
    workflow = load_workflow("sd15_text2image.json")
    with pytest.raises(WorkflowError, match="--comfy-url"):
        workflow.to_api(None)


def test_api_workflow_to_api_is_a_copy():
    """to_api of an API workflow returns a copy that can be changed freely."""
    workflow = load_workflow("empty_invert")
    prompt = workflow.to_api(None)
    prompt["1"]["inputs"]["width"] = 1
    assert workflow.data["1"]["inputs"]["width"] == 512


def test_sidecar_of_api_and_ui_files_is_shared():
    """x.api.json and x.json share x.params.toml."""
    api, ui = load_workflow("sd15_text2image"), load_workflow("sd15_text2image.json")
    assert api.sidecar_path == ui.sidecar_path
    assert api.sidecar_path is not None and api.sidecar_path.name == "sd15_text2image.params.toml"
