"""The gateway's Prometheus metrics at ``GET /metrics``: requests, latency, open streams, submits.

Labels are bounded: ``route`` is the matched route's template (``/api/v2/jobs/{id}``, never an
id), ``unmatched`` for anything else; ``status`` the HTTP status. Each app has its own registry
(several gateways in one test process do not share counters).

Under ``comfyfarm gateway --processes N`` each process writes its samples to the supervisor's
private ``PROMETHEUS_MULTIPROC_DIR`` (``tasks.multiprocess_metrics``) and every process's
``/metrics`` serves the sum of all of them: a scrape that lands on any process sees the whole
gateway. ``open_streams`` sums the live processes (``livesum``); the counters of a process that
died stay in the sum (its files are kept), so totals never go backwards. Multiprocess mode has
no ``*_created`` samples.

Who may scrape::

    COMFYFARM_METRICS_TOKEN set   -> only ``Authorization: Bearer <that token>`` (401 otherwise);
                                     tenant tokens do not open it
    unset, COMFYFARM_API_TOKENS   -> any tenant's bearer token (the gateway's own auth)
    neither (loopback gateway)    -> open, like the rest of a loopback gateway

Metric names (all ``comfyfarm_gateway_…``): ``requests_total{route,method,status}``,
``request_seconds{route,method}`` (histogram; an event stream counts its whole life),
``open_streams`` (event streams open now), ``submits_total{outcome}`` (POST /api/v2/jobs:
``accepted`` on 2xx, ``refused`` otherwise).
"""

from __future__ import annotations

import hmac
import time
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client import Counter as PromCounter
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from comfyfarm.gateway.auth import unauthorized
from comfyfarm.gateway.errors import Handler
from comfyfarm.tasks.multiprocess_metrics import aggregate_registry

METRICS_PATH = "/metrics"
SUBMIT_ROUTE = "/api/v2/jobs"
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0, 600.0)


class GatewayMetrics:
    """The registry and instruments of one gateway app. With ``multiprocess_dir`` (a child of
    ``--processes N``; ``prometheus_client`` was imported with that directory in the
    environment) the exposition is the sum of every process's files, not this registry."""

    def __init__(self, multiprocess_dir: str | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = PromCounter(
            "comfyfarm_gateway_requests", "HTTP requests answered by the gateway",
            ["route", "method", "status"], registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "comfyfarm_gateway_request_seconds", "Time to answer a request (streams: their life)",
            ["route", "method"], buckets=_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.submits = PromCounter(
            "comfyfarm_gateway_submits", "Jobs submitted through POST /api/v2/jobs",
            ["outcome"], registry=self.registry,
        )  # fmt: skip
        # Moved by the streams themselves (a function gauge is not written to the shared files).
        self.open_streams = Gauge(
            "comfyfarm_gateway_open_streams", "Event streams open now",
            multiprocess_mode="livesum", registry=self.registry,
        )  # fmt: skip
        for outcome in ("accepted", "refused"):
            self.submits.labels(outcome)
        self._served = (
            self.registry if multiprocess_dir is None else aggregate_registry(multiprocess_dir)
        )

    def observe(self, request: web.Request, status: int, seconds: float) -> None:
        route = _route(request)
        self.requests.labels(route, request.method, str(status)).inc()
        self.latency.labels(route, request.method).observe(seconds)
        if route == SUBMIT_ROUTE and request.method == "POST":
            self.submits.labels("accepted" if 200 <= status < 300 else "refused").inc()

    def exposition(self) -> bytes:
        return generate_latest(self._served)


METRICS = web.AppKey("metrics", GatewayMetrics)


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    if resource is None or request.match_info.http_exception is not None:
        return "unmatched"
    return resource.canonical


def metrics_middleware(metrics: GatewayMetrics) -> Any:
    """Outermost: times every request and records the status the client got."""

    @web.middleware
    async def measure(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            if request.path != METRICS_PATH:
                metrics.observe(request, status, time.perf_counter() - started)

    return measure


def metrics_handler(metrics: GatewayMetrics, token: str | None) -> Handler:
    """``GET /metrics``; with ``token`` it checks the bearer itself (tenant auth skips it)."""
    expected = f"Bearer {token}".encode() if token else None

    async def serve_metrics(request: web.Request) -> web.StreamResponse:
        if expected is not None:
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                raise unauthorized("metrics need 'Authorization: Bearer <COMFYFARM_METRICS_TOKEN>'")
        body = metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return serve_metrics
