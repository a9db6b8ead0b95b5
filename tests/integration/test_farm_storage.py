"""Outputs go to the storage the worker is configured with: here S3 (a moto server)."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import boto3
from farm_kit import S3_ENV, WorkerFactory, blake3_of, path_of

from comfyfarm.producer import Farm
from comfyfarm.workflows import SchemaSource, prepare_jobs


def test_outputs_land_in_s3_with_the_recorded_hash(
    farm: Farm, workers: WorkerFactory, start_sim, s3_endpoint: str
) -> None:
    """With s3:// storage, outputs and result.json land as objects with the recorded BLAKE3 hash."""
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", **_creds())
    bucket = f"farm-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    storage_url = f"s3://{bucket}/renders?endpoint_url={s3_endpoint}&region=us-east-1"
    sim = start_sim("--step-ms", "1", "--load-ms", "0")
    workers.start(sim, env={**S3_ENV, "COMFYFARM_STORAGE_URL": storage_url})
    prepared = prepare_jobs(
        "sd15_text2image", schema=SchemaSource.from_url(sim.url), sweeps=["seed=1,2"]
    )

    results = [job.wait(30) for job in farm.submit_many(prepared)]

    for result in results:
        assert result.status == "succeeded", result.error
        [record] = result.outputs
        assert record.uri is not None and record.uri.startswith(f"s3://{bucket}/renders/")
        key = record.uri[len(f"s3://{bucket}/") :]
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert blake3_of(body) == record.hash and len(body) == record.bytes
        summary = s3.get_object(Bucket=bucket, Key=f"renders/{result.job_id}/result.json")
        assert json.loads(summary["Body"].read())["outputs"][0]["hash"] == record.hash


def _creds() -> dict[str, str]:
    return {
        "aws_access_key_id": S3_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": S3_ENV["AWS_SECRET_ACCESS_KEY"],
    }


def test_a_worker_set_to_sha256_records_sha256_hashes(
    farm: Farm, workers: WorkerFactory, start_sim, out_dir: Path
) -> None:
    """COMFYFARM_OUTPUT_DIGEST=sha256 on the worker makes its outputs' hash sha256:<hex>."""
    sim = start_sim("--step-ms", "1", "--load-ms", "0")
    workers.start(sim, env={"COMFYFARM_OUTPUT_DIGEST": "sha256"})
    [prepared] = prepare_jobs("sd15_text2image", schema=SchemaSource.from_url(sim.url))

    result = farm.submit(prepared).wait(30)

    assert result.status == "succeeded", result.error
    [record] = result.outputs
    data = path_of(record.uri or "").read_bytes()
    assert record.hash == "sha256:" + hashlib.sha256(data).hexdigest()
