"""Submitting: the messages a worker will find in Redis (no worker running)."""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
from producer_helpers import PROMPT, all_messages, body_of, queued_messages

from comfyfarm.producer import Farm, build_spec
from comfyfarm.tasks.errors import JobSpecError, QueueNameError
from comfyfarm.tasks.keyspace import job_key
from comfyfarm.tasks.models import InputFile, JobSpec, new_job_id
from comfyfarm.tasks.names import RUN_JOB
from comfyfarm.tasks.routing import SHARED_QUEUE, capability_queue, worker_queue


def test_submit_puts_one_json_message_that_round_trips(farm: Farm, rds: redis.Redis) -> None:
    """One RUN_JOB message with task id = job id, whose JSON args[0] is the JobSpec."""
    job = farm.submit(PROMPT, params={"seed": 7}, workflow_name="sd15", labels={"batch": "b1"})
    [envelope] = all_messages(rds, farm.settings.key_prefix, SHARED_QUEUE)
    headers = envelope["headers"]
    assert (headers["task"], headers["id"]) == (RUN_JOB, job.job_id)
    args, kwargs, _embed = body_of(envelope)
    assert kwargs == {} and len(args) == 1
    spec = JobSpec.from_dict(args[0])
    assert spec == job.spec
    assert spec.params == {"seed": 7} and spec.workflow_name == "sd15"
    assert spec.deadline_seconds == farm.settings.max_job_seconds
    assert spec.enqueued_at > 0


def test_flower_sees_a_short_readable_job(farm: Farm, rds: redis.Redis) -> None:
    """argsrepr/kwargsrepr show the workflow and params, never the whole prompt."""
    big = copy.deepcopy(PROMPT)
    big["6"]["inputs"]["text"] = "a very long prompt text " * 200
    farm.submit(big, params={"seed": 3, "steps": 20}, workflow_name="sd15", labels={"team": "x"})
    [envelope] = all_messages(rds, farm.settings.key_prefix, SHARED_QUEUE)
    headers = envelope["headers"]
    assert headers["argsrepr"] == "sd15(seed=3, steps=20)"
    assert headers["kwargsrepr"] == "{'team': 'x'}"
    assert headers["comfyfarm"]["workflow"] == "sd15"
    assert len(json.dumps(headers)) < 2000


def test_message_has_time_limits_from_the_deadline(farm: Farm, rds: redis.Redis) -> None:
    """The per-job time limits follow the job's deadline and stay under the visibility timeout."""
    farm.submit(PROMPT, deadline_seconds=300)
    [envelope] = all_messages(rds, farm.settings.key_prefix, SHARED_QUEUE)
    hard, soft = envelope["headers"]["timelimit"]
    assert 300 < soft < hard < farm.settings.visibility_timeout


def test_priorities_land_in_their_lists(farm: Farm, rds: redis.Redis) -> None:
    """Each farm priority has its own Redis list; the default is 5."""
    urgent = farm.submit(PROMPT, priority=9)
    normal = farm.submit(PROMPT)
    low = farm.submit(PROMPT, priority=0)
    queued = queued_messages(rds, farm.settings.key_prefix, SHARED_QUEUE)
    assert {p: [m["headers"]["id"] for m in ms] for p, ms in queued.items()} == {
        9: [urgent.job_id],
        5: [normal.job_id],
        0: [low.job_id],
    }
    with pytest.raises(ValueError):
        farm.submit(PROMPT, priority=10)


def test_worker_and_capability_queues(farm: Farm, rds: redis.Redis) -> None:
    """A job can be pinned to one worker's queue or a capability queue; typos are refused."""
    farm.submit(PROMPT, queue=worker_queue("gpu0"))
    farm.submit(PROMPT, queue=capability_queue("sdxl"))
    prefix = farm.settings.key_prefix
    assert len(all_messages(rds, prefix, "comfyfarm.worker.gpu0")) == 1
    assert len(all_messages(rds, prefix, "comfyfarm.cap.sdxl")) == 1
    assert all_messages(rds, prefix, SHARED_QUEUE) == []
    with pytest.raises(QueueNameError):
        farm.submit(PROMPT, queue="celery")


def test_invalid_jobs_send_nothing(farm: Farm, rds: redis.Redis) -> None:
    """A bad prompt or a deadline beyond the farm's limit is refused before sending."""
    with pytest.raises(JobSpecError) as caught:
        farm.submit({"1": {"class_type": "X", "inputs": {"a": ["2", 0]}}})
    assert caught.value.field == "prompt.1.inputs.a"
    with pytest.raises(JobSpecError) as caught:
        farm.submit(PROMPT, deadline_seconds=farm.settings.max_job_seconds + 1)
    assert "COMFYFARM_MAX_JOB_SECONDS" in str(caught.value)
    assert all_messages(rds, farm.settings.key_prefix, SHARED_QUEUE) == []


def test_inputs_in_every_form(farm: Farm, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """InputFile, tuples and InputRef-like objects become InputFiles; local paths absolute."""
    monkeypatch.chdir(tmp_path)

    @dataclass
    class Ref:
        node_id: str
        input_name: str
        source: str

    job = farm.submit(
        PROMPT,
        inputs=[
            ("10", "image", "cat.png"),
            Ref("10", "image", "https://cdn.example.com/img/dog.jpg?x=1"),
            InputFile(node_id="10", input_name="image", source="/mnt/a.png", filename="b.png"),
        ],
    )
    assert job.spec is not None
    sources = [(i.source, i.filename) for i in job.spec.inputs]
    assert sources == [
        (os.path.join(str(tmp_path), "cat.png"), "cat.png"),
        ("https://cdn.example.com/img/dog.jpg?x=1", "dog.jpg"),
        ("/mnt/a.png", "b.png"),
    ]
    with pytest.raises(JobSpecError) as caught:
        farm.submit(PROMPT, inputs=[("77", "image", "/x.png")])
    assert caught.value.field == "inputs[0].node_id"


def test_prepared_jobs_and_ready_specs(farm: Farm) -> None:
    """A workflows.PreparedJob-like object and a ready JobSpec are both accepted."""

    @dataclass
    class Prepared:
        prompt: dict[str, Any]
        params: dict[str, Any] = field(default_factory=dict)
        inputs: list[Any] = field(default_factory=list)
        workflow_name: str = "sd15_txt2img"

    job = farm.submit(Prepared(PROMPT, {"seed": 1}), params={"steps": 30})
    assert job.spec is not None
    assert job.spec.params == {"seed": 1, "steps": 30}
    assert job.spec.workflow_name == "sd15_txt2img"
    ready = build_spec(PROMPT, farm.settings, job_id=new_job_id())
    assert farm.submit(ready).job_id == ready.job_id
    with pytest.raises(TypeError):
        farm.submit(ready, params={"x": 1})


def test_submit_writes_a_job_record(farm: Farm, rds: redis.Redis) -> None:
    """A small record per job (with TTL) lets status() tell queued from unknown."""
    job = farm.submit(PROMPT, params={"seed": 1}, job_id=new_job_id())
    key = job_key(farm.settings.key_prefix, job.job_id)
    record = json.loads(rds.get(key) or "{}")
    assert record["params"] == {"seed": 1} and record["queue"] == SHARED_QUEUE
    assert 0 < rds.ttl(key) <= farm.settings.result_expires


def test_submit_many_of_1000_lands_1000_messages(farm: Farm, rds: redis.Redis) -> None:
    """1,000 jobs arrive as 1,000 distinct messages, in submission order."""
    prompts = []
    for seed in range(1000):
        prompt = copy.deepcopy(PROMPT)
        prompt["6"]["inputs"]["text"] = f"cat {seed}"
        prompts.append(prompt)
    jobs = farm.submit_many(prompts, workflow_name="sweep", chunk_size=300)
    messages = all_messages(rds, farm.settings.key_prefix, SHARED_QUEUE)
    assert len(messages) == 1000
    assert [m["headers"]["id"] for m in messages] == [job.job_id for job in jobs]
    assert body_of(messages[999])[0][0]["prompt"]["6"]["inputs"]["text"] == "cat 999"


def test_submit_many_validates_everything_first(farm: Farm, rds: redis.Redis) -> None:
    """One bad item among many sends nothing and names the item."""
    items = [PROMPT, PROMPT, {"1": {"class_type": "X"}}, PROMPT]
    with pytest.raises(JobSpecError) as caught:
        farm.submit_many(items)
    assert caught.value.field == "items[2].prompt.1.inputs"
    assert all_messages(rds, farm.settings.key_prefix, SHARED_QUEUE) == []


def test_duplicate_job_ids_are_refused(farm: Farm) -> None:
    """The same job id twice in one batch is an error."""
    spec = build_spec(PROMPT, farm.settings)
    with pytest.raises(JobSpecError):
        farm.send([spec, spec])


def test_task_sent_events_are_published(farm: Farm) -> None:
    """Every job emits a task-sent event (Flower shows queued jobs), batched ones too."""
    events = farm.redis.pubsub()
    events.psubscribe(f"{farm.settings.key_prefix}*celeryev*")
    assert events.get_message(timeout=2)["type"] == "psubscribe"
    jobs = farm.submit_many([PROMPT] * 3)
    seen = []
    while len(seen) < 3:
        message = events.get_message(timeout=5)
        assert message is not None, f"only {len(seen)} task-sent events"
        if message["type"] == "pmessage":
            event = body_of(json.loads(message["data"]))
            if event.get("type") == "task-sent":
                seen.append(event["uuid"])
    events.close()
    assert seen == [job.job_id for job in jobs]
