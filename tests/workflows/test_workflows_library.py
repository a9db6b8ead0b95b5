"""The shipped workflow library is loadable, parameterised and valid (workflows/library)."""

from __future__ import annotations

import pytest

from comfyfarm.workflows import (
    list_workflows,
    load_workflow,
    prepare_jobs,
    validate_prompt,
    workflow_params,
)
from comfyfarm.workflows.overrides import parse_address, resolve_address

MODEL_FREE = ["empty_invert", "empty_scale", "empty_batch"]


@pytest.mark.parametrize("name", list_workflows())
def test_every_library_workflow_has_a_sidecar_whose_targets_resolve(schema, name):
    """Each shipped workflow's parameters name inputs that exist."""
    workflow = load_workflow(name)
    params = workflow_params(workflow, workflow.data, schema)
    assert params.source.endswith(f"{name}.params.toml")
    for param in params.params.values():
        assert param.help, param.name
        for target in param.targets:
            resolve_address(parse_address(target), workflow.to_api(schema), schema)


@pytest.mark.parametrize("name", MODEL_FREE)
def test_model_free_workflows_are_valid_on_a_server_without_models(schema, name):
    """The model-free workflows pass validation against the model-less server's schemas."""
    assert validate_prompt(load_workflow(name).to_api(schema), schema) == []


@pytest.mark.parametrize("name", ["sd15_text2image", "sd15_image2image"])
def test_sd15_workflows_only_lack_their_models(schema, name):
    """The SD1.5 workflows are valid except for model files that server does not have."""
    problems = validate_prompt(load_workflow(name).to_api(schema), schema)
    assert problems and {p.kind for p in problems} == {"missing_model"}


def test_image2image_denoises_a_loaded_image(schema):
    """sd15_image2image: LoadImage -> VAEEncode -> KSampler with denoise 0.6."""
    prompt = load_workflow("sd15_image2image").data
    classes = {node["class_type"] for node in prompt.values()}
    assert {"LoadImage", "VAEEncode", "KSampler", "SaveImage"} <= classes
    sampler = next(n for n in prompt.values() if n["class_type"] == "KSampler")
    assert sampler["inputs"]["denoise"] == 0.6
    assert prompt[sampler["inputs"]["latent_image"][0]]["class_type"] == "VAEEncode"


def test_batch_and_scale_workflows_use_their_params(schema):
    """Sidecar names of the model-free workflows set the right inputs."""
    [batch] = prepare_jobs("empty_batch", schema=schema, params=["batch=2", "color=65280"])
    assert batch.prompt["1"]["inputs"]["batch_size"] == 2
    [scale] = prepare_jobs("empty_scale", schema=schema, params=["method=bicubic", "width=128"])
    assert scale.prompt["2"]["inputs"]["upscale_method"] == "bicubic"
    assert scale.prompt["2"]["inputs"]["width"] == 128
    outputs = {n["class_type"] for n in scale.prompt.values()}
    assert {"PreviewImage", "SaveImage"} <= outputs
