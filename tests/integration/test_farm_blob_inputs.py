"""Uploaded assets as job inputs: a worker reads a blob by its storage URI and uploads it into its
ComfyUI under the asset's file name (what the Comfy API v2 gateway's asset references become)."""

from __future__ import annotations

import struct
import uuid

import boto3
import requests
from farm_kit import S3_ENV, WorkerFactory, blake3_of, path_of, png_bytes

from comfyfarm.producer import Farm
from comfyfarm.storage import OutputStore, open_store
from comfyfarm.storage.blobs import BlobStore
from comfyfarm.tasks.models import InputFile

INVERT = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "placeholder.png"}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "inv"}},
}


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    assert data.startswith(b"\x89PNG\r\n\x1a\n"), data[:8]
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def run_with_asset(farm: Farm, sim_url: str, store: OutputStore) -> tuple[str, bytes]:
    """Upload a 24×16 PNG as an asset, run LoadImage → ImageInvert → SaveImage on it; return the
    job id and the output bytes. The input must have been uploaded as photo.png (the worker
    empties it once the prompt is done, so its name is what is left to check)."""
    blobs = BlobStore(store, max_bytes=1 << 20)
    image = png_bytes(24, 16)
    with blobs.begin("acme") as writer:
        writer.write(image[:20])
        writer.write(image[20:])
        blob, _ = writer.commit(blake3_of(image))
    asset = blobs.create_asset("acme", blob, name="photo.png", mime_type="image/png")
    source = blobs.uri(blobs.blob_of(asset))

    job = farm.submit(
        INVERT,
        inputs=[InputFile(node_id="1", input_name="image", source=source, filename=asset.name)],
    )
    result = job.wait(30)

    assert result.status == "succeeded", result.error
    [output] = result.outputs
    assert output.uri is not None
    produced = store.read_bytes(f"{result.job_id}/{output.uri.rsplit('/', 1)[1]}")
    assert output.hash == blake3_of(produced)
    uploaded = requests.get(
        sim_url + "/view",
        params={"filename": "photo.png", "subfolder": f"comfyfarm/{job.job_id}", "type": "input"},
        timeout=5,
    )
    assert uploaded.status_code == 200
    return job.job_id, produced


def test_a_blob_on_file_storage_is_uploaded_under_its_asset_name(
    farm: Farm, workers: WorkerFactory, start_sim, out_dir
) -> None:
    """A blob URI in file:// storage reaches ComfyUI as comfyfarm/<job>/photo.png; sizes kept."""
    sim = start_sim("--step-ms", "1", "--load-ms", "0")
    workers.start(sim)
    store = open_store(out_dir.as_uri())

    job_id, produced = run_with_asset(farm, sim.url, store)

    assert png_size(produced) == (24, 16)  # LoadImage read the asset's bytes
    assert path_of(store.uri(f"{job_id}/result.json")).is_file()


def test_a_blob_on_s3_storage_is_uploaded_under_its_asset_name(
    farm: Farm, workers: WorkerFactory, start_sim, s3_endpoint: str, monkeypatch
) -> None:
    """A blob URI in the worker's s3:// store (endpoint in the URL query) is read through that
    store and uploaded by name."""
    for name, value in S3_ENV.items():
        monkeypatch.setenv(name, value)
    bucket = f"blobs-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(
        Bucket=bucket
    )
    storage_url = f"s3://{bucket}/farm?endpoint_url={s3_endpoint}&region=us-east-1"
    sim = start_sim("--step-ms", "1", "--load-ms", "0")
    workers.start(sim, env={**S3_ENV, "COMFYFARM_STORAGE_URL": storage_url})
    store = open_store(storage_url)

    _, produced = run_with_asset(farm, sim.url, store)

    assert png_size(produced) == (24, 16)  # LoadImage read the asset's bytes
