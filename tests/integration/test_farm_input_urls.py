"""Inputs by URL through a real worker: refused on loopback unless allowed, fetched once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from farm_kit import WorkerFactory, png_bytes, sim_stats
from local_http import Answer, serve

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

    def answer(handler: Any) -> Answer:
        if handler.headers.get("If-None-Match") == '"p1"':
            return 304, {}, b""
        transfers.append(handler.path)
        return 200, {"ETag": '"p1"'}, body

    with serve(answer) as served:
        yield f"{served.base}/cat.png", transfers


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
