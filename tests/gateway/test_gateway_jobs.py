"""Jobs through the gateway with the official comfy-sdk client: real Valkey, real workers and
simulators behind a real ``comfyfarm gateway`` process; every JSON response checked against the
Comfy API v2 spec."""

from __future__ import annotations

import uuid

import pytest
from comfy_low.errors import ApiError
from comfy_sdk import (
    IdempotencyKeyReuse,
    InvalidWorkflow,
    NotFound,
    QueueFull,
    WorkflowFormatUi,
)
from comfy_sdk.exceptions import to_sdk_error
from farm_kit import wait_until
from workflows_kit import broken, invert, text2image, ui_workflow


def fast_farm(start_sim, workers):
    sim = start_sim("--step-ms", "1", "--load-ms", "0")
    workers.start(sim)
    return sim


def test_sdk_submits_a_workflow_and_polls_it_to_success(sdk, start_sim, workers) -> None:
    """client.submit → 201 queued job; job.result() ends succeeded with outputs and metrics."""
    fast_farm(start_sim, workers)
    client = sdk("acme")
    job = client.submit(client.workflows.from_json(invert()), metadata={"run": "a1"})

    assert job.status in ("queued", "running")
    done = job.result()

    assert done.status == "succeeded"
    [output] = done.get_outputs("3")
    assert output.type == "image" if hasattr(output, "type") else True
    assert job.metadata == {"run": "a1"}
    model = done._model
    assert model.metrics is not None and model.metrics["execution_ms"] is not None
    assert model.started_at is not None and model.completed_at is not None


def test_unknown_job_is_not_found(sdk, start_sim, workers) -> None:
    """GET of an id the farm never saw (or a malformed one) is 404 not_found."""
    client = sdk("acme")
    with pytest.raises(NotFound):
        client.jobs.get(str(uuid.uuid4()))
    with pytest.raises(NotFound):
        client.jobs.get("not-a-uuid")


def test_another_tenants_job_is_not_found(sdk, start_sim, workers) -> None:
    """A job of tenant acme is 404 for tenant globex: get, cancel, workflow and events alike."""
    fast_farm(start_sim, workers)
    acme, globex = sdk("acme"), sdk("globex")
    job = acme.submit(acme.workflows.from_json(invert()))

    with pytest.raises(NotFound):
        globex.jobs.get(job.id)

    def events(job_id):
        return next(iter(globex._low.get_job_events(job_id)))

    for call in (globex._low.cancel_job, globex._low.get_job_workflow, events):
        with pytest.raises(ApiError) as caught:
            call(job.id)
        assert caught.value.http_status == 404 and caught.value.code == "not_found"
    assert acme.jobs.get(job.id).id == job.id


def test_wrong_token_is_unauthorized(gateway, spec) -> None:
    """A missing or wrong bearer token is 401 unauthorized in the error envelope."""
    import httpx

    for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}):
        response = httpx.get(f"{gateway.url}/api/v2/jobs/{uuid.uuid4()}", headers=headers)
        spec.check(response)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"


def test_invalid_workflow_lists_every_node_problem(sdk, start_sim, workers) -> None:
    """Two broken nodes → 422 invalid_workflow with both in error.details.node_errors."""
    fast_farm(start_sim, workers)
    client = sdk("acme")
    wait_until(lambda: _schemas_published(client), what="a published schema")

    with pytest.raises(InvalidWorkflow) as caught:
        client.submit(client.workflows.from_json(broken(text2image())))

    node_errors = caught.value.details["node_errors"]
    assert set(node_errors) >= {"3", "5"}
    assert node_errors["3"][0]["field"] == "sampler_name"
    assert node_errors["5"][0]["field"] == "width"


def _schemas_published(client) -> bool:
    """True once a submit is validated (a worker published its schema)."""
    try:
        client._low.post_jobs({"1": {"class_type": "NoSuchNode", "inputs": {}}})
    except ApiError as exc:
        return exc.code == "invalid_workflow"
    return False


def test_ui_export_is_refused_unless_conversion_is_asked_for(sdk, start_sim, workers) -> None:
    """A UI export is 422 workflow_format_ui; with "convert_ui": true it is converted and runs."""
    fast_farm(start_sim, workers)
    client = sdk("acme")
    ui = ui_workflow("empty_invert")

    with pytest.raises(ApiError) as caught:
        client._low.post_jobs(ui)
    assert isinstance(to_sdk_error(caught.value), WorkflowFormatUi)

    wait_until(lambda: _schemas_published(client), what="a published schema")
    response = client._low.raw_request("POST", "/jobs", json={"workflow": ui, "convert_ui": True})
    assert response.status_code == 201, response.text
    job = client.jobs.get(response.json()["id"]).wait(30)
    assert job.status == "succeeded"
    assert client._low.get_job_workflow(job.id).workflow["3"]["class_type"] == "SaveImage"


def test_idempotency_key_is_single_use_and_released_on_refusal(sdk, start_sim, workers) -> None:
    """A refused submission frees its key; a created job's key is rejected on any reuse."""
    fast_farm(start_sim, workers)
    client = sdk("acme")
    wait_until(lambda: _schemas_published(client), what="a published schema")
    key = str(uuid.uuid4())

    with pytest.raises(InvalidWorkflow):
        client.submit(client.workflows.from_json(broken(text2image())), idempotency_key=key)
    job = client.submit(client.workflows.from_json(invert()), idempotency_key=key)
    with pytest.raises(IdempotencyKeyReuse):
        client.submit(client.workflows.from_json(invert()), idempotency_key=key)
    with pytest.raises(IdempotencyKeyReuse):
        client.submit(client.workflows.from_json(text2image()), idempotency_key=key)
    other = sdk("globex")  # keys are per tenant
    assert other.submit(other.workflows.from_json(invert()), idempotency_key=key).id != job.id


def test_queue_full_answers_429_with_retry_after(start_gateway, spec, monkeypatch) -> None:
    """Past COMFYFARM_MAX_QUEUE_DEPTH, POST /jobs is 429 queue_full + Retry-After (QueueFull)."""
    import comfy_sdk.client
    from comfy_sdk import Comfy

    gateway = start_gateway(COMFYFARM_MAX_QUEUE_DEPTH="2")
    monkeypatch.setenv("COMFY_BASE_URL", gateway.url)
    monkeypatch.setattr(comfy_sdk.client, "_QUEUE_RETRY_BUDGET", 0.0)  # no retries in the test
    client = spec.watch(Comfy(api_key="acme-token-0123456789abcdef"))
    for _ in range(2):  # no worker: they stay queued
        client.submit(client.workflows.from_json(invert()))

    with pytest.raises(QueueFull) as caught:
        client.submit(client.workflows.from_json(invert()))

    assert caught.value.retry_after >= 1
    client.close()


def test_cancel_interrupts_a_running_job(sdk, start_sim, workers) -> None:
    """Cancel of a running job answers canceling (or canceled) and the job ends canceled."""
    sim = start_sim("--step-ms", "200", "--load-ms", "0")
    workers.start(sim)
    client = sdk("acme")
    job = client.submit(client.workflows.from_json(text2image(steps=100)))
    wait_until(lambda: job.refresh().status == "running", what="the job to run")

    job.cancel()
    assert job.status in ("canceling", "canceled")
    job.wait(30)

    assert job.status == "canceled"
    assert job.error is not None and job.error.code == "canceled"
    assert job.cancel().status == "canceled"  # idempotent


def test_cancel_of_a_queued_job_drops_it(sdk) -> None:
    """A job still queued (no worker) is canceled at once."""
    client = sdk("acme")
    job = client.submit(client.workflows.from_json(invert()))

    assert job.cancel().status == "canceled"
    assert client.jobs.get(job.id).status == "canceled"


def test_list_jobs_pages_newest_first_and_filters_by_metadata(sdk) -> None:
    """GET /jobs lists only the caller's jobs, newest first, paged, filtered by metadata."""
    acme, globex = sdk("acme"), sdk("globex")
    ids = [acme.submit(acme.workflows.from_json(invert()), metadata={"batch": str(i % 2)}).id
           for i in range(5)]  # fmt: skip
    globex.submit(globex.workflows.from_json(invert()))

    listed = [summary.id for summary in acme.list_jobs(limit=2)]
    odd = [summary.id for summary in acme.list_jobs(metadata={"batch": "1"}, limit=1)]

    assert listed == ids[::-1]
    assert odd == [ids[3], ids[1]]
    assert all(s.status == "queued" for s in acme.list_jobs())


def test_queue_position_counts_the_jobs_ahead(sdk) -> None:
    """Queued jobs report how many jobs wait before them; a cancel moves the others up."""
    client = sdk("acme")
    jobs = [client.submit(client.workflows.from_json(invert())) for _ in range(3)]

    positions = [client.jobs.get(job.id)._model.queue_position for job in jobs]
    jobs[0].cancel()

    assert positions == [0, 1, 2]
    wait_until(lambda: client.jobs.get(jobs[2].id)._model.queue_position == 1,
               what="the last job to move up")  # fmt: skip


def test_webhook_and_priority_extensions_reach_the_farm(sdk, start_sim, workers) -> None:
    """The documented extensions: ``webhook_url`` gets the farm's completion call, ``priority``
    is accepted; a stock client never sends them."""
    from farm_kit import WebhookReceiver

    workers.start(start_sim("--step-ms", "1", "--load-ms", "0"))
    client = sdk("acme")
    with WebhookReceiver() as hook:
        response = client._low.raw_request(
            "POST", "/jobs", json={"workflow": invert(), "webhook_url": hook.url, "priority": 9}
        )
        assert response.status_code == 201, response.text
        job = client.jobs.get(response.json()["id"]).wait(30)
        assert hook.received.wait(30)

    assert job.status == "succeeded"
    assert job.id.encode() in hook.requests[0].body


def test_gateways_share_nothing_but_redis(start_gateway, sdk_factory_for, start_sim, workers):
    """A job submitted through one gateway is followed, listed and its output downloaded
    through another (gateways are stateless: any of several behind a load balancer)."""
    workers.start(start_sim("--step-ms", "1", "--load-ms", "0"))
    first, second = start_gateway(), start_gateway()
    via_first = sdk_factory_for(first)("acme")
    via_second = sdk_factory_for(second)("acme")

    submitted = via_first.submit(via_first.workflows.from_json(invert()), metadata={"lb": "x"})
    job = via_second.jobs.get(submitted.id).result()

    assert [s.id for s in via_second.list_jobs(metadata={"lb": "x"})] == [submitted.id]
    assert job.get_outputs("3")[0].to_bytes().startswith(b"\x89PNG")
