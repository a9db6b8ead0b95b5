"""Named parameters: sidecars, inference and --param (workflows.params, prepare)."""

from __future__ import annotations

import random

import pytest
from workflow_data import SEED

from comfyfarm.workflows import (
    ParameterError,
    PromptInvalid,
    WorkflowFormatError,
    load_workflow,
    prepare_jobs,
    workflow_params,
)
from comfyfarm.workflows.params import infer_params, load_sidecar


def test_library_sidecar_names_the_sd15_parameters(schema):
    """sd15_text2image.params.toml maps prompt, seed, ... to node inputs."""
    workflow = load_workflow("sd15_text2image")
    params = workflow_params(workflow, workflow.data, schema)
    assert params.source.endswith("sd15_text2image.params.toml")
    assert params.params["prompt"].targets == ("6.text",)
    assert {"negative", "seed", "steps", "cfg", "width", "height", "checkpoint"} <= set(
        params.params
    )


def test_params_apply_to_the_prompt_and_are_recorded(schema):
    """--param values land in their inputs and in the job's parameter record."""
    [job] = prepare_jobs(
        "sd15_text2image",
        schema=schema,
        params=["prompt=a cat in a hat", "steps=30", "sampler=dpmpp_2m"],
        validate=False,
    )
    assert job.prompt["6"]["inputs"]["text"] == "a cat in a hat"
    assert job.prompt["3"]["inputs"]["steps"] == 30
    assert job.params == {"prompt": "a cat in a hat", "steps": 30, "sampler": "dpmpp_2m"}
    assert job.workflow_name == "sd15_text2image"


def test_unknown_param_lists_the_available_ones(schema):
    """A misspelt parameter gets a did-you-mean and the list of names."""
    with pytest.raises(ParameterError) as caught:
        prepare_jobs("sd15_text2image", schema=schema, params=["promt=x"], validate=False)
    problem = caught.value.problems[0]
    assert problem.kind == "unknown_parameter"
    assert "prompt, negative, seed" in problem.message
    assert "did you mean 'prompt'" in problem.fix


def test_seed_random_draws_within_range_and_is_recorded(schema):
    """seed=random draws an int within the input's range, shown in the record."""
    jobs = prepare_jobs(
        "sd15_text2image",
        schema=schema,
        params=["seed=random"],
        count=3,
        validate=False,
        rng=random.Random(1),
    )
    seeds = [job.params["seed"] for job in jobs]
    assert len(set(seeds)) == 3
    assert all(0 <= seed <= 2**53 - 1 for seed in seeds)
    assert [job.prompt["3"]["inputs"]["seed"] for job in jobs] == seeds


def test_sidecar_default_applies_unless_given(tmp_path, schema):
    """A sidecar default is used (and recorded) when the parameter is not given."""
    (tmp_path / "w.api.json").write_text(load_workflow("empty_invert").path.read_text())
    (tmp_path / "w.params.toml").write_text(
        '[params.color]\ntarget = "1.color"\ndefault = 255\nhelp = "fill"\n'
    )
    [job] = prepare_jobs(tmp_path / "w.api.json", schema=schema)
    assert job.prompt["1"]["inputs"]["color"] == 255 and job.params == {"color": 255}
    [job] = prepare_jobs(tmp_path / "w.api.json", schema=schema, params=["color=7"])
    assert job.params == {"color": 7}


@pytest.mark.parametrize(
    ("toml", "reason"),
    [
        ("[params.x\n", "not valid TOML"),
        ('[params.x]\nhelp = "no target"\n', "needs target"),
        ('[params.x]\ntarget = "1.a"\nwidget = 1\n', "unknown keys"),
        ('title = "x"\n', "unknown top-level keys"),
    ],
)
def test_broken_sidecars_are_format_errors(tmp_path, toml, reason):
    """Sidecar mistakes are reported with the file and the reason."""
    path = tmp_path / "w.params.toml"
    path.write_text(toml)
    with pytest.raises(WorkflowFormatError, match=reason):
        load_sidecar(path)


def test_sidecar_target_that_names_nothing_is_reported(tmp_path, schema):
    """A sidecar target missing from the workflow is an error naming the parameter."""
    (tmp_path / "w.api.json").write_text(load_workflow("empty_invert").path.read_text())
    (tmp_path / "w.params.toml").write_text('[params.size]\ntarget = "9.width"\n')
    with pytest.raises(ParameterError, match="parameter 'size'"):
        prepare_jobs(tmp_path / "w.api.json", schema=schema, params=["size=64"])


def test_inference_follows_the_conditioning_chain(schema, data):
    """Without a sidecar, prompt/negative follow the samplers' conditioning to the text inputs."""
    prompt = load_workflow(data("rules_ui.json")).to_api(schema)
    params = infer_params(prompt, schema).params
    assert params["prompt"].targets == ("3.text",)
    assert params["negative"].targets == ("4.text",)
    assert "seed" not in params  # two samplers: ambiguous
    assert params["width"].targets == ("5.width",)
    assert params["checkpoint"].targets == ("1.ckpt_name",)


def test_inference_through_conditioning_nodes():
    """ConditioningCombine-like nodes are followed back to their text encoders."""
    prompt = {
        "1": {"class_type": "CLIPTextEncode", "inputs": {"text": "a", "clip": ["9", 1]}},
        "2": {"class_type": "ConditioningSetArea", "inputs": {"conditioning": ["1", 0]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "b", "clip": ["9", 1]}},
        "4": {
            "class_type": "KSampler",
            "inputs": {"seed": 1, "positive": ["2", 0], "negative": ["3", 0]},
        },
    }
    params = infer_params(prompt, None).params
    assert params["prompt"].targets == ("1.text",)
    assert params["negative"].targets == ("3.text",)
    assert params["seed"].targets == ("4.seed",)


def test_inference_for_the_sd15_seed_workflow(schema):
    """The seed's UI workflow, with no sidecar, gets the usual friendly names."""
    workflow = load_workflow(SEED / "SD1.5_text2image_vae-ft-mse-840000.json")
    params = workflow_params(workflow, workflow.to_api(schema), schema)
    assert params.source == "inferred"
    expected = {
        "prompt": "6.text",
        "negative": "7.text",
        "seed": "3.seed",
        "steps": "3.steps",
        "cfg": "3.cfg",
        "sampler": "3.sampler_name",
        "scheduler": "3.scheduler",
        "denoise": "3.denoise",
        "width": "5.width",
        "height": "5.height",
        "batch": "5.batch_size",
        "checkpoint": "4.ckpt_name",
        "vae": "10.vae_name",
        "prefix": "9.filename_prefix",
    }
    assert {name: p.targets[0] for name, p in params.params.items()} == expected


def test_model_free_workflow_infers_unique_input_names(schema):
    """Without a sampler, inputs that occur on one node only become parameters."""
    prompt = load_workflow("empty_scale").data
    params = infer_params(prompt, schema).params
    assert params["upscale_method"].targets == ("2.upscale_method",)
    assert params["color"].targets == ("1.color",)
    assert "width" not in params  # EmptyImage and ImageScale both have one


def test_every_job_is_validated_before_it_is_returned(schema):
    """A workflow that ComfyUI would reject fails in prepare_jobs, problems listed."""
    with pytest.raises(PromptInvalid) as caught:
        prepare_jobs("sd15_text2image", schema=schema, params=["prompt=x"])
    assert {p.kind for p in caught.value.problems} == {"missing_model"}
    assert prepare_jobs("sd15_text2image", schema=schema, validate=False)


def test_all_parameter_mistakes_are_reported_at_once(schema):
    """An unknown name does not hide the bad values of the other parameters."""
    with pytest.raises(ParameterError) as caught:
        prepare_jobs(
            "sd15_text2image",
            schema=schema,
            params=["sampler=eulr", "steps=0", "promt=x"],
            validate=False,
        )
    kinds = sorted(p.kind for p in caught.value.problems)
    assert kinds == ["unknown_parameter", "value_not_in_list", "value_smaller_than_min"]
