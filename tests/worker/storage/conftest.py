"""Stores under test: every backend through the same fixtures.

S3 runs against a real moto server in its own process (``python -m moto.server``), reached over
HTTP like any S3-compatible endpoint — not moto's in-process mock — so memory measured in this
process is the client's alone.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from comfyfarm.services import ManagedProcess, free_port
from comfyfarm.storage import LocalStore, MemoryStore, OutputStore

BACKENDS = ["file", "memory", "s3"]


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """URL of a moto S3 server started for this test session."""
    port = free_port()
    env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    server = ManagedProcess(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        ready=lambda line: "Running on" in line,
        name="moto server",
        env=env,
    ).start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def s3_url(s3_endpoint: str, s3_env: None) -> str:
    """An s3:// store URL on a fresh bucket of the moto server."""
    import boto3

    bucket = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(
        Bucket=bucket
    )
    return f"s3://{bucket}/outputs?endpoint_url={s3_endpoint}&region=us-east-1"


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OutputStore]:
    """One store per backend, empty."""
    if request.param == "file":
        yield LocalStore(tmp_path / "store")
    elif request.param == "memory":
        memory = MemoryStore(f"test-{uuid.uuid4().hex}")
        yield memory
        memory.clear()
    else:
        from comfyfarm.storage import open_store

        yield open_store(request.getfixturevalue("s3_url"))
