"""Assets through the gateway with the official comfy-sdk client: upload (deduplicated per
tenant), reference in a workflow by handle or by file name, download, delete."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import pytest
from comfy_low.errors import ApiError
from comfy_sdk import HashMismatch, MissingAsset
from farm_kit import png_bytes
from test_gateway_events import png_size
from workflows_kit import load_invert_save


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    path.write_bytes(png_bytes(37, 21))
    return path


def test_upload_is_deduplicated_per_tenant(sdk, photo: Path) -> None:
    """The same bytes twice: one blob (second upload 200, created_new false), two asset ids;
    another tenant cannot find the blob by its hash."""
    client = sdk("acme")
    first = client.assets.from_file(photo)
    first_id = first.commit()
    data = photo.read_bytes()

    again = client._low.post_assets(io.BytesIO(data), "image/png", "photo.png")
    second = client.assets.from_file(photo)
    second_id = second.commit()  # the SDK probes by-hash, then mints from-hash

    assert again.created_new is False and again.hash == first.hash
    assert len({first_id, again.id, second_id}) == 3
    assert client._low.head_asset_by_hash(first.hash) is True
    other = sdk("globex")
    assert other._low.head_asset_by_hash(first.hash) is False
    with pytest.raises(ApiError) as caught:
        other._low.asset_from_hash(first.hash)
    assert caught.value.code == "blob_not_found"
    with pytest.raises(ApiError) as caught:
        other._low.get_asset(first_id)
    assert caught.value.http_status == 404


def test_uploaded_asset_downloads_whole_and_by_range(sdk, photo: Path) -> None:
    """GET content gives the uploaded bytes; a Range gives exactly that slice."""
    client = sdk("acme")
    asset_id = client.assets.from_file(photo).commit()
    data = photo.read_bytes()

    with client._low.get_asset_content(asset_id) as response:
        whole = response.read()
    with client._low.get_asset_content(asset_id, range=(4, 11)) as response:
        part = response.read()
        status = response.status_code

    assert whole == data
    assert status == 206 and part == data[4:12]


def test_wrong_expected_hash_is_409_and_stores_nothing(sdk, photo: Path) -> None:
    """An expected_hash that is not the bytes' BLAKE3 is 409 hash_mismatch."""
    client = sdk("acme")
    wrong = "blake3:" + "0" * 64
    with pytest.raises(ApiError) as caught:
        client._low.post_assets(io.BytesIO(b"abc"), "text/plain", "a.txt", expected_hash=wrong)
    assert caught.value.http_status == 409
    from comfy_sdk.exceptions import to_sdk_error

    assert isinstance(to_sdk_error(caught.value), HashMismatch)
    assert client._low.head_asset_by_hash(wrong) is False


def test_workflow_runs_on_an_asset_handle(sdk, start_sim, workers, photo: Path) -> None:
    """LoadImage → ImageInvert → SaveImage with a core/ASSET input: the worker uploads the
    asset's bytes and the output has the input's pixel size."""
    workers.start(start_sim("--step-ms", "1", "--load-ms", "0"))
    client = sdk("acme")
    wf = client.workflows.from_json(load_invert_save("placeholder.png"))
    wf.set_input("1", "image", client.assets.from_file(photo))

    job = client.submit(wf).result()

    [output] = job.get_outputs("3")
    assert png_size(output.to_bytes()) == (37, 21)


def test_workflow_runs_on_an_uploaded_file_name(sdk, start_sim, workers, photo: Path) -> None:
    """A plain "image": "photo.png" naming the caller's upload works as ComfyUI users write it."""
    workers.start(start_sim("--step-ms", "1", "--load-ms", "0"))
    client = sdk("acme")
    client.assets.from_file(photo).commit()

    job = client.submit(client.workflows.from_json(load_invert_save("photo.png"))).result()

    [output] = job.get_outputs("3")
    assert png_size(output.to_bytes()) == (37, 21)


def test_unknown_asset_reference_is_missing_asset(sdk, photo: Path) -> None:
    """A core/ASSET id that is unknown, or another tenant's, is 422 missing_asset."""
    acme, globex = sdk("acme"), sdk("globex")
    theirs = globex.assets.from_file(photo).commit()
    for asset_id in (str(uuid.uuid4()), theirs):
        ref = {"__type": "core/ASSET", "info": {"id": asset_id}}
        with pytest.raises(MissingAsset) as caught:
            acme.submit(acme.workflows.from_json(load_invert_save(ref)))
        assert "1" in caught.value.details["node_errors"]


def test_delete_removes_the_record_not_the_shared_blob(sdk, photo: Path) -> None:
    """DELETE answers 204, then 404; another asset over the same bytes still downloads."""
    client = sdk("acme")
    doomed = client.assets.from_file(photo).commit()
    kept = client.assets.from_file(photo).commit()

    client._low.delete_asset(doomed)

    with pytest.raises(ApiError) as caught:
        client._low.delete_asset(doomed)
    assert caught.value.http_status == 404
    with client._low.get_asset_content(kept) as response:
        assert response.read() == photo.read_bytes()
