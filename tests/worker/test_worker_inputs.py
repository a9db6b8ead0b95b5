"""Input files: read from where the producer pointed, uploaded into the job's own folder."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import pytest

from comfyfarm.comfy.client import ComfyClient
from comfyfarm.comfy.uploads import UploadedFile
from comfyfarm.storage import LocalStore, MemoryStore
from comfyfarm.storage.blobs import BlobStore
from comfyfarm.tasks.models import InputFile, JobSpec, new_job_id
from comfyfarm.worker.fetch import FetchPolicy
from comfyfarm.worker.inputs import (
    InputFileError,
    InputSources,
    InputUnavailable,
    read_input,
    upload_inputs,
)

PROMPT = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "a.png"}},
    "2": {"class_type": "LoadImage", "inputs": {"image": "b.png"}},
    "3": {"class_type": "LoadImage", "inputs": {"image": "c.png"}},
}


class FakeClient:
    """Records uploads and answers like ComfyUI."""

    def __init__(self) -> None:
        self.uploads: list[dict[str, Any]] = []

    def upload_image(
        self, data: bytes, *, filename: str, subfolder: str = "", overwrite: bool = False
    ) -> UploadedFile:
        self.uploads.append(
            {"data": data, "filename": filename, "subfolder": subfolder, "overwrite": overwrite}
        )
        return UploadedFile(name=filename, subfolder=subfolder, type="input")


def item(source: str, node: str = "1", filename: str = "in.png") -> InputFile:
    return InputFile(node_id=node, input_name="image", source=source, filename=filename)


def test_inputs_go_to_the_job_folder_and_the_prompt_points_at_them(tmp_path: Path) -> None:
    """Inputs are uploaded into comfyfarm/<job_id>/ and the prompt copy points at them."""
    (tmp_path / "a.png").write_bytes(b"A")
    spec = JobSpec(
        job_id=new_job_id(),
        prompt=PROMPT,
        inputs=[item(str(tmp_path / "a.png"), "1", "a.png")],
    )
    client = FakeClient()

    prompt = upload_inputs(cast(ComfyClient, client), spec)

    [upload] = client.uploads
    assert upload == {
        "data": b"A", "filename": "a.png", "subfolder": f"comfyfarm/{spec.job_id}",
        "overwrite": True,
    }  # fmt: skip
    assert prompt["1"]["inputs"]["image"] == f"comfyfarm/{spec.job_id}/a.png"
    assert spec.prompt["1"]["inputs"]["image"] == "a.png"


def test_same_name_from_different_sources_does_not_clobber(tmp_path: Path) -> None:
    """Same-named files from two sources get distinct names; a repeated source uploads once."""
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    (tmp_path / "x" / "img.png").write_bytes(b"X")
    (tmp_path / "y" / "img.png").write_bytes(b"Y")
    spec = JobSpec(
        job_id=new_job_id(),
        prompt=PROMPT,
        inputs=[
            item(str(tmp_path / "x" / "img.png"), "1", "img.png"),
            item(str(tmp_path / "y" / "img.png"), "2", "img.png"),
            item(str(tmp_path / "x" / "img.png"), "3", "img.png"),
        ],
    )
    client = FakeClient()

    prompt = upload_inputs(cast(ComfyClient, client), spec)

    assert [(u["filename"], u["data"]) for u in client.uploads] == [
        ("img.png", b"X"),
        ("1_img.png", b"Y"),
    ]
    refs = [prompt[n]["inputs"]["image"].rsplit("/", 1)[1] for n in ("1", "2", "3")]
    assert refs == ["img.png", "1_img.png", "img.png"]


def test_file_uris_are_decoded(tmp_path: Path) -> None:
    """A file:// URI with escaped characters reads the file it names."""
    path = tmp_path / "my image.png"
    path.write_bytes(b"data")
    assert read_input(item(path.as_uri())) == b"data"


def test_missing_local_file_is_a_permanent_input_error(tmp_path: Path) -> None:
    """A path that does not exist fails with InputFileError naming the node and input."""
    with pytest.raises(InputFileError) as caught:
        read_input(item(str(tmp_path / "nope.png"), "7"))
    assert not isinstance(caught.value, InputUnavailable)
    assert caught.value.node_id == "7" and caught.value.to_dict()["input_name"] == "image"


def test_storage_uris_are_read_from_their_store() -> None:
    """A memory:// storage URI (as a JobResult output URI) is read from that store."""
    store = MemoryStore("inputs-test")
    stored = store.write_bytes("job/9_0_out.png", b"png-bytes")
    try:
        assert read_input(item(stored.uri)) == b"png-bytes"
        with pytest.raises(InputFileError):
            read_input(item(store.url + "/job/missing.png"))
    finally:
        store.clear()


def test_uris_under_the_workers_own_store_are_read_through_it(tmp_path: Path) -> None:
    """A blob URI under the worker's store is read by its key there (file names %-decoded)."""
    store = LocalStore(tmp_path / "root")
    blobs = BlobStore(store, max_bytes=1024)
    with blobs.begin("acme") as writer:
        writer.write(b"asset bytes")
        blob, _ = writer.commit()
    spaced = store.write_bytes("job/my photo.png", b"spaced")

    assert read_input(item(blobs.uri(blob)), store=store) == b"asset bytes"
    assert read_input(item(spaced.uri), store=store) == b"spaced"


def test_uris_that_climb_out_of_the_workers_store_are_refused(tmp_path: Path) -> None:
    """A URI under the store that escapes it with '..' is refused, not read from outside."""
    store = LocalStore(tmp_path / "root")
    (tmp_path / "secret.png").write_bytes(b"secret")
    with pytest.raises(InputFileError, match="'..'"):
        read_input(item(store.url + "/../secret.png"), store=store)


@pytest.fixture
def http_source() -> Iterator[Any]:
    statuses: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            status = statuses.pop(0) if statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "3")
            self.end_headers()
            self.wfile.write(b"img")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/a.png", statuses
    server.shutdown()
    server.server_close()


def test_http_sources_are_downloaded_and_5xx_is_retryable(http_source: Any) -> None:
    """http sources are downloaded; 5xx is InputUnavailable (retryable), 404 a permanent error."""
    url, statuses = http_source
    local = InputSources(FetchPolicy.parse("127.0.0.1", max_bytes=1 << 20, timeout=10))
    assert read_input(item(url), sources=local) == b"img"
    statuses.append(503)
    with pytest.raises(InputUnavailable):
        read_input(item(url), sources=local)
    statuses.append(404)
    with pytest.raises(InputFileError) as caught:
        read_input(item(url), sources=local)
    assert not isinstance(caught.value, InputUnavailable)
