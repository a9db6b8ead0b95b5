"""s3:// specifics against a real moto server: multipart, aborts, URL settings, error mapping."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from comfyfarm.storage import StorageError, StorageUnavailable, open_store
from comfyfarm.storage.s3 import MIN_PART_SIZE, S3Store, s3_error


def raw_client(s3_url: str) -> Any:
    endpoint = parse_qs(urlsplit(s3_url).query)["endpoint_url"][0]
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


def bucket_of(s3_url: str) -> str:
    return urlsplit(s3_url).netloc


def test_objects_live_under_the_url_prefix(s3_url: str) -> None:
    """Keys are stored under the URL's prefix with the given content type."""
    store = open_store(s3_url)
    stored = store.write_bytes("job/9_0_a.png", b"png", content_type="image/png")
    assert stored.uri == f"s3://{bucket_of(s3_url)}/outputs/job/9_0_a.png"
    head = raw_client(s3_url).head_object(Bucket=bucket_of(s3_url), Key="outputs/job/9_0_a.png")
    assert head["ContentType"] == "image/png" and head["ContentLength"] == 3


def test_large_writes_use_multipart(s3_url: str) -> None:
    """Data larger than a part is uploaded in parts and reassembled exactly."""
    store = open_store(s3_url)
    assert isinstance(store, S3Store)
    store.part_size = MIN_PART_SIZE
    data = bytes(range(256)) * (3 * MIN_PART_SIZE // 256 + 1000)
    stored = store.write(
        "job/big.bin", (data[i : i + 700_000] for i in range(0, len(data), 700_000))
    )
    assert stored.bytes == len(data)
    assert store.read_bytes("job/big.bin") == data
    head = raw_client(s3_url).head_object(Bucket=bucket_of(s3_url), Key="outputs/job/big.bin")
    assert head["ETag"].endswith('-4"')  # a multipart ETag: 4 parts


def test_failed_multipart_is_aborted(s3_url: str) -> None:
    """A source failing after several parts leaves no object and no pending upload."""
    store = open_store(s3_url)
    store.part_size = MIN_PART_SIZE  # type: ignore[attr-defined]

    def chunks() -> Iterator[bytes]:
        for _ in range(12):
            yield b"\0" * 1024 * 1024
        raise ConnectionResetError("source died")

    with pytest.raises(ConnectionResetError):
        store.write("job/broken.bin", chunks())
    assert not store.exists("job/broken.bin")
    uploads = raw_client(s3_url).list_multipart_uploads(Bucket=bucket_of(s3_url))
    assert uploads.get("Uploads", []) == []


def test_endpoint_and_region_from_environment(s3_endpoint: str, s3_env: None) -> None:
    """Without query values the endpoint and region come from COMFYFARM_S3_* variables."""
    env = {"COMFYFARM_S3_ENDPOINT_URL": s3_endpoint, "COMFYFARM_S3_REGION": "eu-west-1"}
    store = open_store("s3://some-bucket/p", environ=env)
    assert isinstance(store, S3Store)
    assert store.client.meta.endpoint_url == s3_endpoint
    assert store.client.meta.region_name == "eu-west-1"
    assert store.url == "s3://some-bucket/p"


def test_missing_bucket_is_the_workers_store_failing(s3_endpoint: str, s3_env: None) -> None:
    """Writing to a bucket that does not exist is StorageUnavailable: the worker's store, not
    the job, so the job is retried elsewhere (and the worker's store probe stops it)."""
    store = open_store(f"s3://no-such-bucket-x1?endpoint_url={s3_endpoint}")
    with pytest.raises(StorageUnavailable, match="NoSuchBucket"):
        store.write_bytes("a.txt", b"x")


def test_unreachable_endpoint_is_retryable(s3_env: None) -> None:
    """A refused connection raises StorageUnavailable."""
    from comfyfarm.services import free_port

    store = open_store(f"s3://bucket-x?endpoint_url=http://127.0.0.1:{free_port()}")
    with pytest.raises(StorageUnavailable):
        store.write_bytes("a.txt", b"x")


def test_error_mapping() -> None:
    """5xx, throttling, connection errors and the worker's own bucket or credentials refusing
    (AccessDenied, NoSuchBucket) are retryable; other 4xx are not."""

    def client_error(code: str, status: int) -> ClientError:
        response = {
            "Error": {"Code": code, "Message": "m"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }
        return ClientError(response, "PutObject")  # type: ignore[arg-type]

    assert isinstance(s3_error("k", client_error("InternalError", 500)), StorageUnavailable)
    assert isinstance(s3_error("k", client_error("SlowDown", 503)), StorageUnavailable)
    denied = s3_error("k", client_error("AccessDenied", 403))
    assert isinstance(denied, StorageUnavailable)  # the worker's credentials, not the job
    assert isinstance(s3_error("k", client_error("NoSuchBucket", 404)), StorageUnavailable)
    assert type(s3_error("k", client_error("InvalidArgument", 400))) is StorageError
    unreachable = s3_error("k", EndpointConnectionError(endpoint_url="http://x"))
    assert isinstance(unreachable, StorageUnavailable)
