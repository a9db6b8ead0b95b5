"""Sweeps and counts expand into many jobs, each with its own record (workflows.sweeps)."""

from __future__ import annotations

import random

import pytest

from comfyfarm.workflows import ParameterError, prepare_jobs
from comfyfarm.workflows.sweeps import expand, parse_sweep


def _values(text, **kwargs):
    return [setting.value for setting in parse_sweep(text, **kwargs).values]


def test_lists_ranges_and_steps():
    """a,b,c lists, inclusive ranges, stepped and float ranges, JSON arrays."""
    assert _values("sampler=euler,dpmpp_2m") == ["euler", "dpmpp_2m"]
    assert _values("seed=1..4") == [1, 2, 3, 4]
    assert _values("steps=1..20:5") == [1, 6, 11, 16]
    assert _values("seed=5..1:-2") == [5, 3, 1]
    assert _values("denoise=0.5..1:0.25") == [0.5, 0.75, 1.0]
    assert _values('prompt=["a, b", "c"]') == ["a, b", "c"]
    assert _values("cfg=7") == [7]


def test_file_values_are_one_per_line(tmp_path):
    """@file gives one value per non-blank line, kept as text."""
    (tmp_path / "prompts.txt").write_text("a red fox\n\n  a blue whale, 4k\ntrue\n")
    assert _values("prompt=@prompts.txt", base_dir=tmp_path) == [
        "a red fox",
        "  a blue whale, 4k",
        "true",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("seed=1..5:0", "never gets"),
        ("seed=5..1", "never gets"),
        ("seed=@missing.txt", "cannot read"),
        ("seed", "NAME=VALUE"),
        ("seed=1..999999999", "more than"),
    ],
)
def test_bad_sweeps_are_explained(text, message, tmp_path):
    """Impossible ranges, missing files and malformed sweeps are errors."""
    with pytest.raises(ParameterError, match=message):
        parse_sweep(text, base_dir=tmp_path)


def test_product_varies_the_last_sweep_fastest():
    """Two sweeps give the cartesian product, first sweep slowest."""
    combos = expand([parse_sweep("a=1,2"), parse_sweep("b=x,y,z")])
    assert [[s.value for s in combo] for combo in combos] == [
        [1, "x"],
        [1, "y"],
        [1, "z"],
        [2, "x"],
        [2, "y"],
        [2, "z"],
    ]


def test_zip_pairs_values_and_needs_equal_lengths():
    """--zip pairs the n-th values; unequal lengths are an error."""
    combos = expand([parse_sweep("a=1,2"), parse_sweep("b=x,y")], zip_sweeps=True)
    assert [[s.value for s in combo] for combo in combos] == [[1, "x"], [2, "y"]]
    with pytest.raises(ParameterError, match="same number"):
        expand([parse_sweep("a=1,2"), parse_sweep("b=x")], zip_sweeps=True)


def test_sweeps_make_one_job_per_combination_with_records(schema, tmp_path):
    """Each job gets its own prompt and parameter record."""
    (tmp_path / "p.txt").write_text("a fox\na whale\n")
    jobs = prepare_jobs(
        "sd15_text2image",
        schema=schema,
        sweeps=["steps=10..30:10", f"prompt=@{tmp_path / 'p.txt'}"],
        validate=False,
    )
    assert len(jobs) == 6
    assert jobs[0].params == {"steps": 10, "prompt": "a fox"}
    assert jobs[5].params == {"steps": 30, "prompt": "a whale"}
    assert jobs[5].prompt["3"]["inputs"]["steps"] == 30
    assert jobs[5].prompt["6"]["inputs"]["text"] == "a whale"
    assert jobs[0].prompt["3"]["inputs"]["steps"] == 10


def test_sweep_over_an_address(schema):
    """A sweep key can be a --set address."""
    jobs = prepare_jobs("empty_invert", schema=schema, sweeps=["EmptyImage.color=1,2"])
    assert [job.prompt["1"]["inputs"]["color"] for job in jobs] == [1, 2]
    assert [job.params for job in jobs] == [{"EmptyImage.color": 1}, {"EmptyImage.color": 2}]


def test_count_repeats_with_fresh_random_seeds(schema):
    """count=3 with seed=random gives three jobs with three different seeds."""
    jobs = prepare_jobs(
        "sd15_text2image",
        schema=schema,
        params=["seed=random"],
        sweeps=["cfg=6,8"],
        count=3,
        validate=False,
        rng=random.Random(7),
    )
    assert len(jobs) == 6
    assert len({job.params["seed"] for job in jobs}) == 6
    assert [job.params["cfg"] for job in jobs] == [6, 6, 6, 8, 8, 8]


def test_swept_values_are_coerced(schema):
    """An off-grid sweep value fails with the job's problem."""
    with pytest.raises(ParameterError, match="not on the step grid"):
        prepare_jobs("sd15_text2image", schema=schema, sweeps=["width=512,513"], validate=False)


def test_a_name_given_twice_is_an_error(schema):
    """A parameter both set and swept is refused."""
    with pytest.raises(ParameterError, match="more than once"):
        prepare_jobs("sd15_text2image", schema=schema, params=["steps=3"], sweeps=["steps=1,2"])


def test_count_must_be_positive(schema):
    """count=0 is an error, not zero jobs."""
    with pytest.raises(ParameterError, match="count"):
        prepare_jobs("empty_invert", schema=schema, count=0)
