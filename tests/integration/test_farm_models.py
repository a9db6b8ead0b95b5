"""Models on demand through a real worker and a simulator that lists its models folder."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from farm_kit import WorkerFactory

from comfyfarm.producer import Farm

WEIGHTS = b"\x01weights" * 4096


@pytest.fixture
def model_server() -> Iterator[tuple[str, list[str]]]:
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            seen.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(WEIGHTS)))
            self.end_headers()
            self.wfile.write(WEIGHTS)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}", seen
    httpd.shutdown()
    httpd.server_close()


def sd15_with_checkpoint(ckpt: str, seed: int) -> dict[str, Any]:
    library = resources.files("comfyfarm.workflows") / "library" / "sd15_text2image.api.json"
    prompt = copy.deepcopy(json.loads(library.read_text()))
    prompt["4"]["inputs"]["ckpt_name"] = ckpt
    prompt["3"]["inputs"]["seed"] = seed
    return dict(prompt)


def test_a_checkpoint_named_by_url_is_fetched_once_and_the_jobs_run(
    workers: WorkerFactory, start_sim, farm: Farm, model_server: Any, tmp_path: Path
) -> None:
    """Three jobs naming one checkpoint by URL: one download into the models folder the
    simulator lists, every job succeeds with the local name."""
    base, seen = model_server
    models = tmp_path / "models"
    sim = start_sim("--step-ms", "1", "--load-ms", "0", "--no-models", "--models-dir", str(models),
                    "--models", "vae=vae-ft-mse-840000-ema-pruned.safetensors")  # fmt: skip
    workers.start(sim, args=("--models-dir", str(models)),
                  env={"COMFYFARM_INPUT_ALLOW": "127.0.0.1"})  # fmt: skip
    url = f"{base}/hub/fresh-model.safetensors"
    jobs = [farm.submit(sd15_with_checkpoint(url, seed)) for seed in range(3)]
    for job in jobs:
        result = job.wait(60)
        assert result.status == "succeeded", result.error
    assert seen == ["/hub/fresh-model.safetensors"]
    assert (models / "checkpoints" / "fresh-model.safetensors").read_bytes() == WEIGHTS


def test_a_model_url_on_a_worker_without_a_models_folder_fails_clearly(
    workers: WorkerFactory, start_sim, farm: Farm, model_server: Any
) -> None:
    """Without --models-dir the job fails naming node 4, ckpt_name and the missing folder."""
    base, seen = model_server
    sim = start_sim("--step-ms", "1", "--load-ms", "0")
    workers.start(sim, env={"COMFYFARM_INPUT_ALLOW": "127.0.0.1"})
    result = farm.submit(sd15_with_checkpoint(f"{base}/m.safetensors", 1)).wait(60)
    assert result.status == "failed" and result.error is not None
    assert "4.ckpt_name" in result.error["message"] and "--models-dir" in result.error["message"]
    assert seen == []
