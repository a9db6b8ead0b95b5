"""Live events and outputs through the gateway, with the official comfy-sdk client."""

from __future__ import annotations

import struct
import time

import blake3
import httpx
from comfy_sdk import OutputReady, Progress, StatusChange
from workflows_kit import invert, text2image


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_events_deliver_status_progress_and_outputs_then_end(sdk, start_sim, workers) -> None:
    """job.events(): status first, progress while running, OutputReady before the terminal
    status, and the iteration ends by itself."""
    workers.start(start_sim("--step-ms", "50", "--load-ms", "0"))
    client = sdk("acme")
    job = client.submit(client.workflows.from_json(text2image(steps=20)))

    stamped = [(time.monotonic(), event) for event in job.events()]
    events = [event for _, event in stamped]

    assert isinstance(events[0], StatusChange)
    progress_times = [at for at, e in stamped if isinstance(e, Progress)]
    span = stamped[-1][0] - progress_times[0]
    assert len(progress_times) <= 2 * span + 2, (len(progress_times), span)  # ≤ 2 a second
    statuses = [e.status for e in events if isinstance(e, StatusChange)]
    assert statuses[-1] == "succeeded" and "running" in statuses
    assert isinstance(events[-1], StatusChange)
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress and all(0.0 <= p.value <= 1.0 for p in progress)
    values = [p.value for p in progress]
    assert values == sorted(values)
    outputs = [e for e in events if isinstance(e, OutputReady)]
    assert outputs and events.index(outputs[-1]) < len(events) - 1
    assert outputs[0].output.to_bytes().startswith(b"\x89PNG")


def test_events_of_a_finished_job_send_the_snapshot_and_end(sdk, start_sim, workers) -> None:
    """Connecting after the job finished gives its outputs and terminal status, then ends."""
    workers.start(start_sim("--step-ms", "1", "--load-ms", "0"))
    client = sdk("acme")
    job = client.submit(client.workflows.from_json(invert())).result()

    events = list(job.events())

    assert [type(e).__name__ for e in events] == ["OutputReady", "StatusChange"]
    assert events[-1].status == "succeeded"


def test_output_downloads_whole_and_by_range(sdk, start_sim, workers) -> None:
    """An output is an asset: GET /assets/{id} describes it, its content comes whole or ranged,
    with the pixel size the workflow asked for."""
    workers.start(start_sim("--step-ms", "1", "--load-ms", "0"))
    client = sdk("acme")
    job = client.submit(client.workflows.from_json(invert(width=96, height=40))).result()
    [output] = job.get_outputs("3")

    data = output.to_bytes()
    asset = client._low.get_asset(output.id)

    assert png_size(data) == (96, 40)
    assert len(data) == output.size_bytes == asset.size_bytes
    assert asset.hash == "blake3:" + blake3.blake3(data).hexdigest()
    assert asset.job_id == job.id and asset.content_type == "image/png"
    assert output.to_bytes(range=(8, 23)) == data[8:24]


def test_too_many_streams_is_429(start_gateway, sdk_factory_for, start_sim, workers) -> None:
    """Past COMFYFARM_GATEWAY_MAX_STREAMS open streams of one tenant, the next is 429."""
    gateway = start_gateway(COMFYFARM_GATEWAY_MAX_STREAMS="1")
    client = sdk_factory_for(gateway)("acme")
    job = client.submit(client.workflows.from_json(invert()))  # no worker: stays queued
    headers = {"Authorization": "Bearer acme-token-0123456789abcdef"}
    url = f"{gateway.url}/api/v2/jobs/{job.id}/events"

    with httpx.stream("GET", url, headers=headers, timeout=10) as first:
        assert first.status_code == 200
        next(first.iter_lines())  # the snapshot arrived: the stream is open
        second = httpx.get(url, headers=headers, timeout=10)
        assert second.status_code == 429
        assert second.json()["error"]["code"] == "too_many_streams"
        assert int(second.headers["Retry-After"]) >= 1


def test_the_readme_example_runs_against_the_gateway(gateway, start_sim, workers, tmp_path):
    """examples/comfy_sdk_on_the_farm.py (the README's example) runs unchanged and saves the
    image it made."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tenants import TOKENS

    workers.start(start_sim("--step-ms", "1", "--load-ms", "0"))
    repo = Path(__file__).resolve().parents[2]
    example = repo / "examples" / "comfy_sdk_on_the_farm.py"
    (tmp_path / "workflows" / "library").mkdir(parents=True)
    source = repo / "workflows" / "library" / "sd15_text2image.api.json"
    (tmp_path / "workflows" / "library" / source.name).write_bytes(source.read_bytes())
    env = {**os.environ, "COMFY_BASE_URL": gateway.url, "COMFY_API_KEY": TOKENS["acme"]}

    done = subprocess.run([sys.executable, str(example)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=90, check=False)  # fmt: skip

    assert done.returncode == 0, done.stdout + done.stderr
    assert "saved" in done.stdout
    saved = [p for p in tmp_path.glob("*.png")]
    assert saved and saved[0].read_bytes().startswith(b"\x89PNG")
