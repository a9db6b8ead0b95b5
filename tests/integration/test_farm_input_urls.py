"""Inputs by URL through a real worker: refused on loopback unless allowed, fetched once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from farm_kit import WorkerFactory, png_bytes, sim_stats

from comfyfarm.producer import Farm

PROMPT = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "x.png"}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "u"}},
}


@pytest.fixture
def image_server() -> Iterator[tuple[str, list[str]]]:
    """A local HTTP server of one PNG with an ETag; records the requests that got a body."""
    body, transfers = png_bytes(), []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.headers.get("If-None-Match") == '"p1"':
                self.send_response(304)
                self.end_headers()
                return
            transfers.append(self.path)
            self.send_response(200)
            self.send_header("ETag", '"p1"')
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}/cat.png", transfers
    httpd.shutdown()
    httpd.server_close()


def test_a_loopback_input_url_fails_the_job_before_any_prompt_runs(
    workers: WorkerFactory, start_sim, farm: Farm, image_server: Any
) -> None:
    """By default a worker refuses to fetch http://127.0.0.1/…: the job fails with the node,
    input and reason, its ComfyUI never runs a prompt, and the server is never asked."""
    url, transfers = image_server
    sim = start_sim("--step-ms", "1", "--load-ms", "0")
    workers.start(sim)
    result = farm.submit(PROMPT, inputs=[("1", "image", url)]).wait(60)
    assert result.status == "failed"
    assert result.error is not None
    assert "1.image" in result.error["message"] and "non-public" in result.error["message"]
    assert transfers == []
    assert sum(sim_stats(sim)["executions"].values()) == 0


def test_an_allowed_input_url_is_fetched_once_for_many_jobs(
    workers: WorkerFactory, start_sim, farm: Farm, image_server: Any, tmp_path: Path
) -> None:
    """With COMFYFARM_INPUT_ALLOW=127.0.0.1 the jobs succeed; the worker's cache revalidates
    the URL, so the bytes cross the network once."""
    url, transfers = image_server
    sim = start_sim("--step-ms", "1", "--load-ms", "0")
    workers.start(sim, env={"COMFYFARM_INPUT_ALLOW": "127.0.0.1",
                            "COMFYFARM_INPUT_CACHE_DIR": str(tmp_path / "cache")})  # fmt: skip
    for _ in range(3):
        result = farm.submit(PROMPT, inputs=[("1", "image", url)]).wait(60)
        assert result.status == "succeeded", result.error
    assert transfers == ["/cat.png"]
