"""Job options are declared once (``JobOptions``): every field reaches the job the same way from
``Farm.submit``, ``Farm.submit_many`` and ``comfyfarm submit``; unknown options are refused."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import redis
from producer_helpers import PROMPT, all_messages, body_of, queued_messages

from comfyfarm.cli import main
from comfyfarm.producer import Farm, build_spec
from comfyfarm.tasks.model_files import ModelFile
from comfyfarm.tasks.models import InputFile, JobSpec, new_job_id
from comfyfarm.tasks.options import DELIVERY_OPTIONS, JobOptions, option_names
from comfyfarm.tasks.routing import worker_queue
from comfyfarm.tasks.settings import Settings

SEED_WORKFLOW = Path(__file__).parents[1] / "seed" / "SD1.5_text2image_API.json"
JOB_ID = new_job_id()
QUEUE = worker_queue("gpu7")

# option -> (Python value, command-line words, what the job then holds). A new JobOptions field
# fails test_every_option_has_a_sample until it is listed here, and so gets checked everywhere.
SAMPLES: dict[str, tuple[Any, list[str], Any]] = {
    "params": ({"seed": 7}, ["--param", "seed=7"], {"seed": 7}),
    "inputs": (
        [("10", "image", "/mnt/in/cat.png")],
        ["--input", "10.image=/mnt/in/cat.png"],
        [InputFile(node_id="10", input_name="image", source="/mnt/in/cat.png", filename="cat.png")],
    ),  # fmt: skip
    "labels": ({"team": "ops"}, ["--label", "team=ops"], {"team": "ops"}),
    "webhook_url": (
        "https://hooks.example.com/done",
        ["--webhook", "https://hooks.example.com/done"],
        "https://hooks.example.com/done",
    ),
    "job_id": (JOB_ID, ["--job-id", JOB_ID], JOB_ID),
    "deadline_seconds": (300.0, ["--deadline", "300"], 300.0),
    "stall_timeout_seconds": (45.0, ["--stall-timeout", "45"], 45.0),
    "required_outputs": (["9"], ["--required-output", "9"], ["9"]),
    "storage_prefix": ("team/a", ["--storage-prefix", "team/a"], "team/a"),
    "workflow_name": ("renamed", ["--workflow-name", "renamed"], "renamed"),
    "max_retries": (1, ["--max-retries", "1"], 1),
    "models": (
        [{"folder": "loras", "name": "x.safetensors", "url": "https://hub.example/x.safetensors"}],
        ["--model", "loras/x.safetensors=https://hub.example/x.safetensors"],
        [ModelFile(folder="loras", name="x.safetensors", url="https://hub.example/x.safetensors")],
    ),
    "queue": (QUEUE, ["--queue", QUEUE], QUEUE),
    "priority": (9, ["--priority", "9"], 9),
}


def _python_options() -> dict[str, Any]:
    return {name: value for name, (value, _words, _held) in SAMPLES.items()}


def _check_job(job_id: str, rds: redis.Redis, prefix: str) -> None:
    """Every sample option is in the queued message (spec fields) or decided where it went."""
    [envelope] = all_messages(rds, prefix, QUEUE)  # the queue option: the message is there
    spec = JobSpec.from_dict(body_of(envelope)[0][0])
    assert spec.job_id == job_id
    for name, (_value, _words, held) in SAMPLES.items():
        if name == "queue":
            continue
        elif name == "priority":
            assert list(queued_messages(rds, prefix, QUEUE)) == [held], name
        else:
            assert getattr(spec, name) == held, f"option {name} did not reach the JobSpec"


def test_every_option_has_a_sample() -> None:
    """The samples below cover exactly the JobOptions fields, so each is checked everywhere."""
    assert sorted(SAMPLES) == sorted(option_names())


def test_every_option_lands_in_the_spec_or_the_delivery() -> None:
    """Each option is a JobSpec field (copied by name) or says where the job goes."""
    spec_fields = {spec.name for spec in fields(JobSpec)}
    for name in option_names():
        assert name in spec_fields or name in DELIVERY_OPTIONS, name


def test_submit_accepts_every_option(farm: Farm, rds: redis.Redis) -> None:
    """Farm.submit takes every JobOptions field as a keyword and the job carries it."""
    job = farm.submit(PROMPT, **_python_options())
    _check_job(job.job_id, rds, farm.settings.key_prefix)


def test_submit_many_accepts_every_option(farm: Farm, rds: redis.Redis) -> None:
    """Farm.submit_many takes every JobOptions field as a keyword and applies it to each job."""
    [job] = farm.submit_many([PROMPT], **_python_options())
    _check_job(job.job_id, rds, farm.settings.key_prefix)


def test_command_line_accepts_every_option(
    farm: Farm,
    rds: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``comfyfarm submit`` has a flag for every JobOptions field and the job carries it."""
    monkeypatch.setenv("COMFYFARM_BROKER_URL", farm.settings.broker_url)
    monkeypatch.setenv("COMFYFARM_KEY_PREFIX", farm.settings.key_prefix)
    words = [word for _value, cli, _held in SAMPLES.values() for word in cli]
    code = main(
        ["submit", str(SEED_WORKFLOW), "--no-validate", "--allow-offline", "--json", *words]
    )
    assert code == 0, capsys.readouterr().err
    [line] = capsys.readouterr().out.splitlines()
    queued = json.loads(line)
    assert (queued["job_id"], queued["queue"]) == (JOB_ID, QUEUE)
    _check_job(JOB_ID, rds, farm.settings.key_prefix)


@pytest.mark.parametrize(
    "words,message",
    [
        (["--priority", "12"], "priority must be 0 (lowest) .. 9"),
        (["--storage-prefix", "/abs"], "storage_prefix"),
        (["--input", "77.image=/x.png"], "inputs[0].node_id"),
    ],
)
def test_a_bad_option_value_is_an_error_line_not_a_traceback(
    farm: Farm,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    words: list[str],
    message: str,
) -> None:
    """A value the farm refuses gives exit 2 and one ``error:`` line naming it; nothing is sent."""
    monkeypatch.setenv("COMFYFARM_BROKER_URL", farm.settings.broker_url)
    monkeypatch.setenv("COMFYFARM_KEY_PREFIX", farm.settings.key_prefix)
    assert main(["submit", str(SEED_WORKFLOW), "--no-validate", *words]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert all(depth.total == 0 for depth in farm.queue_depths())


def test_command_line_flags_come_from_the_fields() -> None:
    """Every field names its own flag, and the flags are distinct."""
    flags = [spec.metadata["flag"] for spec in fields(JobOptions)]
    assert all(flag.startswith("--") for flag in flags)
    assert len(set(flags)) == len(flags)


@pytest.mark.parametrize("call", ["submit", "submit_many", "build_spec"])
def test_an_unknown_option_is_a_type_error_naming_it(farm: Farm, call: str) -> None:
    """A misspelt keyword is refused with its name and the valid options, nothing sent."""
    with pytest.raises(TypeError) as caught:
        if call == "submit":
            farm.submit(PROMPT, deadline=30)
        elif call == "submit_many":
            farm.submit_many([PROMPT], deadline=30)
        else:
            build_spec(PROMPT, farm.settings, deadline=30)
    assert f"{call}() got unknown option 'deadline'" in str(caught.value)
    assert "deadline_seconds" in str(caught.value)


def test_a_ready_spec_takes_no_shaping_option(farm: Farm) -> None:
    """Options that shape a job cannot be combined with a ready JobSpec; delivery ones can."""
    ready = build_spec(PROMPT, farm.settings)
    with pytest.raises(TypeError) as caught:
        farm.submit(ready, storage_prefix="x")
    assert "storage_prefix" in str(caught.value)
    assert farm.submit(ready, priority=9, queue=QUEUE).queue == QUEUE


def test_without_a_farm_the_spec_defaults_apply_and_nothing_is_capped() -> None:
    """build_spec with no settings (direct mode) keeps JobSpec's defaults and caps no deadline."""
    farm_cap = Settings().max_job_seconds
    spec = build_spec(PROMPT, deadline_seconds=farm_cap + 60)
    assert spec.deadline_seconds == farm_cap + 60
    plain = build_spec(PROMPT)
    assert (plain.stall_timeout_seconds, plain.max_retries) == (
        JobSpec(job_id=JOB_ID, prompt=PROMPT).stall_timeout_seconds,
        JobSpec(job_id=JOB_ID, prompt=PROMPT).max_retries,
    )


def test_a_bad_label_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """``--label`` without ``=`` is refused by the parser, naming the flag and the value."""
    with pytest.raises(SystemExit) as caught:
        main(["submit", str(SEED_WORKFLOW), "--label", "oops"])
    assert caught.value.code == 2
    assert "--label: wants KEY=VALUE, got 'oops'" in capsys.readouterr().err


def test_submit_routed_refuses_a_queue(farm: Farm) -> None:
    """submit_routed picks each job's queue itself, so a queue option is a clear TypeError."""
    with pytest.raises(TypeError, match="chooses each job's queue itself"):
        farm.submit_routed([], queue=QUEUE)
