"""Repeated prompts (ComfyUI cache hits): counted, and the warning names the seed to vary."""

from __future__ import annotations

from comfyfarm.workflows.repeats import repeat_warning, repeated_jobs, seed_targets

SAMPLER = {"3": {"class_type": "KSampler", "inputs": {"seed": 5, "steps": 20}}}


def test_identical_prompts_are_counted_as_repeats():
    """Three identical prompts are two repeats; different prompts none."""
    other = {"3": {"class_type": "KSampler", "inputs": {"seed": 6, "steps": 20}}}
    assert repeated_jobs([SAMPLER, SAMPLER, SAMPLER]) == 2
    assert repeated_jobs([SAMPLER, other]) == 0


def test_warning_names_the_seed_parameter_when_the_workflow_has_one():
    """With a ``seed`` parameter the fix is ``--param seed=random``."""
    warning = repeat_warning([SAMPLER, SAMPLER], [{"seed": 5}, {"seed": 5}])
    assert warning is not None and "1 of 2 jobs repeat" in warning
    assert warning.endswith("--param seed=random")


def test_warning_names_seed_inputs_for_set_without_a_parameter():
    """Without a seed parameter the prompt's seed inputs are named for ``--set``."""
    noise = {"9": {"class_type": "KSamplerAdvanced", "inputs": {"noise_seed": 1}}}
    assert seed_targets({**SAMPLER, **noise}) == ["3.seed", "9.noise_seed"]
    warning = repeat_warning([SAMPLER, SAMPLER])
    assert warning is not None and "--set 3.seed=random" in warning


def test_no_warning_when_every_prompt_differs():
    """Distinct prompts give no warning."""
    other = {"3": {"class_type": "KSampler", "inputs": {"seed": 6, "steps": 20}}}
    assert repeat_warning([SAMPLER, other]) is None
