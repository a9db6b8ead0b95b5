"""Models on demand: fetched once into the models folder, verified, bounded, never escaping."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3

from comfyfarm.worker.fetch import FetchPolicy
from comfyfarm.worker.inputs import InputFileError
from comfyfarm.worker.models import ModelStore

WEIGHTS = b"\x00weights" * 1000


@pytest.fixture
def model_server() -> Iterator[tuple[str, list[str]]]:
    """Serves WEIGHTS under any path; records every request path."""
    requests_seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            requests_seen.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(WEIGHTS)))
            self.end_headers()
            self.wfile.write(WEIGHTS)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}", requests_seen
    httpd.shutdown()
    httpd.server_close()


def store(root: Path, budget: int = 0) -> ModelStore:
    policy = FetchPolicy.parse("127.0.0.1", max_bytes=1 << 30, timeout=30)
    return ModelStore(root, policy, budget)


def test_a_model_url_is_downloaded_once_and_the_prompt_points_at_the_file(
    model_server: Any, tmp_path: Path
) -> None:
    """Four threads resolving the same URL: one download, every prompt gets the local name."""
    base, seen = model_server
    prompt = {"4": {"class_type": "CheckpointLoaderSimple",
                    "inputs": {"ckpt_name": f"{base}/m/sd15.safetensors"}}}  # fmt: skip
    models = store(tmp_path)
    results: list[dict[str, Any]] = []
    threads = [threading.Thread(target=lambda: results.append(models.resolve(prompt)))
               for _ in range(4)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r["4"]["inputs"]["ckpt_name"] for r in results] == ["sd15.safetensors"] * 4
    assert seen == ["/m/sd15.safetensors"]
    assert (tmp_path / "checkpoints" / "sd15.safetensors").read_bytes() == WEIGHTS
    assert prompt["4"]["inputs"]["ckpt_name"].startswith("http")  # the input is not mutated


def test_a_hash_mismatch_leaves_nothing_behind(model_server: Any, tmp_path: Path) -> None:
    """#blake3=<hex> is verified: a mismatch is an error and no file (or temp file) remains."""
    base, _ = model_server
    with pytest.raises(InputFileError, match="BLAKE3"):
        store(tmp_path).ensure("loras", f"{base}/x.safetensors#blake3={'0' * 64}", "5", "lora_name")
    assert list((tmp_path / "loras").iterdir()) == [
        p for p in (tmp_path / "loras").iterdir() if p.name.endswith("comfyfarm-lock")
    ]
    good = blake3(WEIGHTS).hexdigest()
    assert store(tmp_path).ensure("loras", f"{base}/x.safetensors#blake3={good}", "5", "lora_name")


@pytest.mark.parametrize("path", ["/x.exe", "/x.safetensors.sh", "/..%2Fescape.safetensors",
                                  "/.hidden.safetensors"])  # fmt: skip
def test_only_model_files_inside_the_folder(model_server: Any, tmp_path: Path, path: str) -> None:
    """Other extensions, traversal and hidden names are refused before any request."""
    base, seen = model_server
    with pytest.raises(InputFileError):
        store(tmp_path).ensure("checkpoints", base + path, "4", "ckpt_name")
    assert seen == []


def test_the_budget_evicts_least_recently_used_downloads_never_operator_files(
    model_server: Any, tmp_path: Path
) -> None:
    """Over budget, the oldest download goes; a file the operator placed stays."""
    base, _ = model_server
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "mine.safetensors").write_bytes(b"operator" * 10_000)
    models = store(tmp_path, budget=int(len(WEIGHTS) * 1.5))
    models.ensure("checkpoints", f"{base}/a.safetensors", "4", "ckpt_name")
    models.ensure("checkpoints", f"{base}/b.safetensors", "4", "ckpt_name")
    names = sorted(
        p.name for p in (tmp_path / "checkpoints").iterdir() if p.suffix == ".safetensors"
    )
    assert names == ["b.safetensors", "mine.safetensors"]
