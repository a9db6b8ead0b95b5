"""``comfyfarm bench gateway`` on a tiny load (real Valkey, simulator and gateway processes):
every promised figure is there, and with ``--processes 2`` the open streams still cost one
pub/sub connection per gateway process."""

from __future__ import annotations

import json

import pytest
from comfyfarm_bench.gateway import run_gateway


@pytest.mark.parametrize("processes", [1, 2])
def test_gateway_bench_reports_its_figures_and_one_subscription_per_process(processes) -> None:
    """Small runs print latency, rate, CPU per submit (gateway and load generator) and RSS;
    the gateway holds exactly ``processes`` pub/sub connections for its 24 streams."""
    figures = run_gateway(latency_requests=10, rate_requests=40, concurrency=4, streams=24,
                          processes=processes)  # fmt: skip
    text = str(figures)
    print(text)

    record = figures.to_dict()
    json.dumps(record)
    assert record["processes"] == processes and record["rate_requests"] == 40
    assert figures.submits_per_second > 0 and figures.post_p50_ms > 0
    assert figures.cpu_ms_per_submit > 0 and figures.client_cpu_ms_per_submit > 0
    assert figures.rss_streams_mb > 0
    # 24 streams spread over the processes by the kernel: all on one is a 2**-23 chance.
    assert figures.pubsub_connections == processes
    assert figures.subscribed_channels == 24 + 1  # one per job, plus the live-outputs channel
    assert f"{processes} gateway process" in text
