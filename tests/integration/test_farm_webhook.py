"""Completion webhooks, signed with the farm's secret."""

from __future__ import annotations

import json

from farm_kit import WebhookReceiver, WorkerFactory

from producer import Farm
from worker.webhook import verify
from workflows import SchemaSource, prepare_jobs

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
