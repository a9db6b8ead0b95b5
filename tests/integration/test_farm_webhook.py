"""Completion webhooks, signed with the farm's secret."""

from __future__ import annotations

import json

from farm_kit import WebhookReceiver, WorkerFactory, wait_until

from comfyfarm.producer import Farm
from comfyfarm.worker.webhook import verify
from comfyfarm.workflows import SchemaSource, prepare_jobs

SECRET = "s3cret-for-tests"


def test_completion_webhook_arrives_signed(farm: Farm, workers: WorkerFactory, start_sim) -> None:
    """A finished job's result is POSTed to its webhook, signed with COMFYFARM_WEBHOOK_SECRET."""
    sim = start_sim("--step-ms", "1", "--load-ms", "0")
    workers.start(sim, env={"COMFYFARM_WEBHOOK_SECRET": SECRET})
    [prepared] = prepare_jobs("sd15_text2image", schema=SchemaSource.from_url(sim.url))

    with WebhookReceiver() as receiver:
        job = farm.submit(prepared, webhook_url=receiver.url)
        result = job.wait(30)
        assert receiver.received.wait(10)

    [call] = receiver.requests
    assert call.path == "/hook"
    assert call.headers["Comfyfarm-Webhook-Id"] == job.job_id
    timestamp = int(call.headers["Comfyfarm-Webhook-Timestamp"])
    assert verify(SECRET, timestamp, call.body, call.headers["Comfyfarm-Webhook-Signature"])
    assert not verify("wrong", timestamp, call.body, call.headers["Comfyfarm-Webhook-Signature"])
    body = json.loads(call.body)
    assert body["job_id"] == job.job_id and body["status"] == "succeeded"
    assert body == result.to_dict()


def test_a_failing_receiver_does_not_hold_the_job(
    farm: Farm, workers: WorkerFactory, start_sim
) -> None:
    """A receiver answering 503 is called again seconds later by a separate task; the job's
    result is out before that second call, so the GPU's pipeline slot was not held."""
    sim = start_sim("--step-ms", "1", "--load-ms", "0")
    workers.start(sim, env={"COMFYFARM_WEBHOOK_SECRET": SECRET})
    [prepared] = prepare_jobs("sd15_text2image", schema=SchemaSource.from_url(sim.url))

    with WebhookReceiver(statuses=[503]) as receiver:
        job = farm.submit(prepared, webhook_url=receiver.url)
        result = job.wait(30)
        calls_when_done = len(receiver.requests)
        wait_until(lambda: len(receiver.requests) == 2, 30, "the webhook's second attempt")

    assert result.status == "succeeded"
    assert calls_when_done <= 1
    first, second = receiver.requests
    assert first.body == second.body and json.loads(second.body) == result.to_dict()
    stamps = [int(call.headers["Comfyfarm-Webhook-Timestamp"]) for call in (first, second)]
    assert stamps[1] - stamps[0] >= 1  # backed off (2 s), each attempt signed afresh
    assert verify(SECRET, stamps[1], second.body, second.headers["Comfyfarm-Webhook-Signature"])
