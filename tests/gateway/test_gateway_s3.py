"""A gateway on ``s3://`` storage (a moto server): content URLs of uploads and outputs are
presigned S3 URLs, and ``GET …/content`` redirects to one, so the bytes never pass through the
gateway; the official client downloads through that redirect unchanged."""

from __future__ import annotations

import uuid
from pathlib import Path

import boto3
import httpx
from farm_kit import S3_ENV, png_bytes
from test_gateway_events import png_size
from workflows_kit import load_invert_save


def s3_farm(s3_endpoint: str, start_sim, workers) -> str:
    """A bucket, one worker storing into it; returns the storage URL."""
    bucket = f"gw-{uuid.uuid4().hex[:10]}"
    boto3.client(
        "s3", endpoint_url=s3_endpoint, region_name="us-east-1",
        aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
    ).create_bucket(Bucket=bucket)  # fmt: skip
    storage_url = f"s3://{bucket}/farm?endpoint_url={s3_endpoint}&region=us-east-1"
    sim = start_sim("--step-ms", "1", "--load-ms", "0")
    workers.start(sim, env={**S3_ENV, "COMFYFARM_STORAGE_URL": storage_url})
    return storage_url


def test_content_urls_are_presigned_and_content_redirects(
    start_gateway, sdk_factory_for, start_sim, workers, s3_endpoint: str, tmp_path: Path
) -> None:
    """An upload's and an output's ``url`` fetch the bytes from S3 with no token; the content
    route answers 302 to such a URL; ``Output.to_bytes()`` follows it."""
    storage_url = s3_farm(s3_endpoint, start_sim, workers)
    gateway = start_gateway(COMFYFARM_STORAGE_URL=storage_url, **S3_ENV)
    client = sdk_factory_for(gateway)("acme")
    photo = tmp_path / "photo.png"
    photo.write_bytes(png_bytes(37, 21))

    asset_id = client.assets.from_file(photo).commit()
    asset = client._low.raw_request("GET", f"/assets/{asset_id}").json()
    job = client.submit(client.workflows.from_json(load_invert_save("photo.png"))).result()
    [output] = job.get_outputs("3")
    rendered = client._low.raw_request("GET", f"/jobs/{job.id}").json()["outputs"][0]
    location, _ = client._low.get_asset_content_url(output.id)  # the 302's Location

    assert asset["url"].startswith(s3_endpoint) and "Signature" in asset["url"]
    assert httpx.get(asset["url"]).content == photo.read_bytes()
    assert rendered["url"].startswith(s3_endpoint)
    assert png_size(httpx.get(rendered["url"]).content) == (37, 21)
    assert location.startswith(s3_endpoint) and "Signature" in location
    assert png_size(output.to_bytes()) == (37, 21)


def test_presigning_off_serves_content_through_the_gateway(
    start_gateway, sdk_factory_for, start_sim, workers, s3_endpoint: str, tmp_path: Path
) -> None:
    """``COMFYFARM_GATEWAY_PRESIGN_SECONDS=0`` (an S3 clients cannot reach): the url is the
    gateway's content route, which serves the bytes."""
    storage_url = s3_farm(s3_endpoint, start_sim, workers)
    gateway = start_gateway(
        COMFYFARM_STORAGE_URL=storage_url, COMFYFARM_GATEWAY_PRESIGN_SECONDS="0", **S3_ENV
    )
    client = sdk_factory_for(gateway)("acme")
    photo = tmp_path / "photo.png"
    photo.write_bytes(png_bytes(5, 3))

    asset_id = client.assets.from_file(photo).commit()
    asset = client._low.raw_request("GET", f"/assets/{asset_id}").json()
    content = client._low.raw_request("GET", f"/assets/{asset_id}/content")

    assert asset["url"].startswith(gateway.url)
    assert content.status_code == 200 and content.content == photo.read_bytes()
