"""GET /metrics on a real ``comfyfarm gateway`` process: requests by route and status, latency,
open event streams, submits; guarded by the tenants' tokens or by COMFYFARM_METRICS_TOKEN."""

from __future__ import annotations

import uuid

import httpx
from farm_kit import wait_until
from prometheus_client.parser import text_string_to_metric_families
from tenants import TOKENS
from workflows_kit import invert

ACME = {"Authorization": f"Bearer {TOKENS['acme']}"}
METRICS_TOKEN = "metrics-token-0123456789abcdef"


def scrape(
    url: str, headers: dict[str, str]
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Sample (name, sorted labels) → value of one scrape."""
    response = httpx.get(f"{url}/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def submit(url: str) -> str:
    body = {"workflow": invert()}
    response = httpx.post(f"{url}/api/v2/jobs", json=body, headers=ACME, timeout=10)
    assert response.status_code == 201, response.text
    job_id: str = response.json()["id"]
    return job_id


def test_metrics_count_requests_submits_and_latency_by_route(start_gateway) -> None:
    """Submits, a job read and a 404 move the counters; routes are templates, not ids."""
    gateway = start_gateway()
    before = scrape(gateway.url, ACME)
    job_id = submit(gateway.url)
    submit(gateway.url)
    httpx.get(f"{gateway.url}/api/v2/jobs/{job_id}", headers=ACME, timeout=10)
    httpx.get(f"{gateway.url}/api/v2/jobs/{uuid.uuid4()}", headers=ACME, timeout=10)
    httpx.post(f"{gateway.url}/api/v2/jobs", content=b"{", headers=ACME, timeout=10)

    after = scrape(gateway.url, ACME)

    post = {"route": "/api/v2/jobs", "method": "POST"}
    get = {"route": "/api/v2/jobs/{id}", "method": "GET"}
    requests = "comfyfarm_gateway_requests_total"
    assert (
        value(after, requests, **post, status="201") - value(before, requests, **post, status="201")
        == 2
    )
    assert value(after, requests, **post, status="422") == 1  # invalid_request
    assert value(after, requests, **get, status="200") == 1
    assert value(after, requests, **get, status="404") == 1
    assert value(after, "comfyfarm_gateway_submits_total", outcome="accepted") == 2
    assert value(after, "comfyfarm_gateway_submits_total", outcome="refused") == 1
    assert value(after, "comfyfarm_gateway_request_seconds_count", **get) == 2
    assert not any(job_id in str(labels) for _, labels in after)


def test_open_streams_gauge_follows_an_event_stream(start_gateway) -> None:
    """While a client holds a job's event stream open, open_streams counts it; not after."""
    gateway = start_gateway()
    job_id = submit(gateway.url)
    with httpx.stream(
        "GET", f"{gateway.url}/api/v2/jobs/{job_id}/events", headers=ACME, timeout=30
    ) as stream:
        assert stream.status_code == 200
        wait_until(
            lambda: value(scrape(gateway.url, ACME), "comfyfarm_gateway_open_streams") == 1,
            what="the stream to be counted",
        )
        cancel = f"{gateway.url}/api/v2/jobs/{job_id}/cancel"
        assert httpx.post(cancel, headers=ACME, timeout=10).status_code < 300
        for _ in stream.iter_bytes():  # the stream ends with the job's final status
            pass
    wait_until(
        lambda: value(scrape(gateway.url, ACME), "comfyfarm_gateway_open_streams") == 0,
        what="the ended stream to be uncounted",
    )


def test_metrics_need_a_tenant_token_by_default(start_gateway) -> None:
    """Without COMFYFARM_METRICS_TOKEN, /metrics is behind the gateway's own bearer auth."""
    gateway = start_gateway()
    assert httpx.get(f"{gateway.url}/metrics", timeout=10).status_code == 401
    assert scrape(gateway.url, ACME)


def test_metrics_token_alone_opens_metrics(start_gateway) -> None:
    """With COMFYFARM_METRICS_TOKEN, only that token scrapes; a tenant token gets 401."""
    gateway = start_gateway(COMFYFARM_METRICS_TOKEN=METRICS_TOKEN)
    assert httpx.get(f"{gateway.url}/metrics", headers=ACME, timeout=10).status_code == 401
    assert httpx.get(f"{gateway.url}/metrics", timeout=10).status_code == 401
    samples = scrape(gateway.url, {"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert ("comfyfarm_gateway_open_streams", ()) in samples
