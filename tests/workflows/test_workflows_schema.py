"""Node schemas from /object_info: parsing, files and a live ComfyUI (workflows.schema)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from comfyfarm.workflows import SchemaSource, SchemaUnavailable
from comfyfarm.workflows.schema import InputSpec, types_match


def test_widget_inputs_follow_input_order(schema):
    """KSampler's widgets are seed, steps, cfg, sampler_name, scheduler, denoise."""
    names = [spec.name for spec in schema.node("KSampler").widget_inputs]
    assert names == ["seed", "steps", "cfg", "sampler_name", "scheduler", "denoise"]


def test_input_spec_kinds(schema):
    """Combos, V3 COMBO options, forceInput, hidden and upload inputs are told apart."""
    load_image = schema.node("LoadImage").inputs["image"]
    assert load_image.type == "COMBO" and load_image.is_upload and load_image.is_widget
    blend = schema.node("ImageBlend").inputs["blend_mode"]
    assert blend.type == "COMBO" and "multiply" in blend.options
    assert not schema.node("SaveImage").inputs["prompt"].is_widget
    forced = schema.node("SaveLoRANode").inputs["steps"]
    assert forced.type == "INT" and not forced.is_widget
    assert schema.node("LoadImageOutput").inputs["image"].options is None  # a remote list


def test_control_after_generate_slots(schema):
    """seed/noise_seed and control_after_generate inputs have a control widget."""
    assert schema.node("KSampler").inputs["seed"].has_control_widget
    assert schema.node("KSamplerAdvanced").inputs["noise_seed"].has_control_widget
    assert schema.node("PrimitiveInt").inputs["value"].has_control_widget
    assert not schema.node("KSampler").inputs["steps"].has_control_widget


def test_defaults_for_unset_widgets():
    """Declared default, else first combo option, else a neutral value within range."""
    assert InputSpec.parse("x", "required", ["INT", {"default": 5}]).default_value() == 5
    assert InputSpec.parse("x", "required", [["a", "b"]]).default_value() == "a"
    assert InputSpec.parse("x", "required", ["INT", {"min": 16}]).default_value() == 16
    assert InputSpec.parse("x", "required", ["STRING", {}]).default_value() == ""


def test_types_match_like_comfyui():
    """Equal types, '*' and overlapping comma lists match; others do not."""
    assert types_match("IMAGE", "IMAGE")
    assert types_match("*", "MASK") and types_match("LATENT", "*")
    assert types_match("MODEL_TASK_ID", "MODEL_TASK_ID,RIG_TASK_ID")
    assert not types_match("MASK", "IMAGE")


def test_from_file_errors_are_clear(tmp_path):
    """A missing or broken /object_info file raises SchemaUnavailable naming it."""
    with pytest.raises(SchemaUnavailable, match="nope.json"):
        SchemaSource.from_file(tmp_path / "nope.json")
    broken = tmp_path / "oi.json"
    broken.write_text("{")
    with pytest.raises(SchemaUnavailable, match="not JSON"):
        SchemaSource.from_file(broken)


class _Comfy(BaseHTTPRequestHandler):
    routes: dict[str, object] = {}

    def do_GET(self):  # noqa: N802 - the http.server API
        body = self.routes.get(self.path)
        if body is None:
            self.send_response(404)
            self.end_headers()
            return
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_comfy():
    """A loopback HTTP server answering the routes of _Comfy.routes."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Comfy)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_from_url_reads_object_info_and_model_lists(fake_comfy, object_info):
    """/api/object_info plus /api/models/{folder} become one schema source."""
    _Comfy.routes = {
        "/api/prompt": {"exec_info": {"queue_remaining": 0}},  # how the client finds /api routes
        "/api/object_info": {"SaveImage": object_info["SaveImage"]},
        "/api/models": ["checkpoints"],
        "/api/models/checkpoints": ["sd15.safetensors"],
    }
    schema = SchemaSource.from_url(fake_comfy + "/")
    assert "SaveImage" in schema and len(schema) == 1
    assert schema.models == {"checkpoints": ["sd15.safetensors"]}
    assert schema.origin == fake_comfy


def test_from_url_falls_back_to_the_unprefixed_route(fake_comfy, object_info):
    """A server without /api routes is read from /object_info."""
    _Comfy.routes = {"/object_info": {"EmptyImage": object_info["EmptyImage"]}}
    assert "EmptyImage" in SchemaSource.from_url(fake_comfy)


def test_from_url_rejects_a_server_that_is_not_comfyui(fake_comfy):
    """HTML or 404 answers give a SchemaUnavailable with the reason."""
    _Comfy.routes = {"/api/object_info": b"<html>hi</html>"}
    with pytest.raises(SchemaUnavailable, match="is this a ComfyUI"):
        SchemaSource.from_url(fake_comfy)


def test_from_url_unreachable_is_a_clear_error():
    """A closed port raises SchemaUnavailable saying ComfyUI is not reachable."""
    with pytest.raises(SchemaUnavailable, match="not reachable"):
        SchemaSource.from_url("http://127.0.0.1:9", timeout=2)
