"""The ``inputs`` extension (named parameters) through a real gateway, workers and simulators:
a stock client never sends it; a raw POST sets the workflow's named parameters before
validation, and a bad name or value is refused naming the parameter and its node input."""

from __future__ import annotations

from pathlib import Path

from farm_kit import png_bytes
from test_gateway_events import png_size
from workflows_kit import invert, load_invert_save


def fast_farm(start_sim, workers):
    workers.start(start_sim("--step-ms", "1", "--load-ms", "0"))


def post_with_inputs(client, workflow, inputs):
    return client._low.raw_request("POST", "/jobs", json={"workflow": workflow, "inputs": inputs})


def test_named_inputs_set_the_parameters_the_job_runs_with(sdk, start_sim, workers) -> None:
    """``inputs: {"width": 40, "1.height": 30}`` — an inferred name and a NODE.INPUT address —
    shape the output image and the job's executed workflow."""
    fast_farm(start_sim, workers)
    client = sdk("acme")

    response = post_with_inputs(client, invert(64, 48), {"width": 40, "1.height": 30})
    assert response.status_code == 201, response.text
    job = client.jobs.get(response.json()["id"]).result()

    assert job.status == "succeeded"
    assert png_size(job.get_outputs("3")[0].to_bytes()) == (40, 30)
    executed = client._low.raw_request("GET", f"/jobs/{job.id}/workflow").json()["workflow"]
    assert executed["1"]["inputs"]["width"] == 40 and executed["1"]["inputs"]["height"] == 30


def test_bad_named_inputs_are_refused_naming_each_parameter(sdk, start_sim, workers) -> None:
    """An unknown name and a value of the wrong type: one 422 ``invalid_inputs`` that names
    both, the second at its node and input; nothing is enqueued."""
    fast_farm(start_sim, workers)
    client = sdk("acme")

    response = post_with_inputs(client, invert(), {"widht": 40, "height": "tall"})

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_inputs"
    assert set(error["details"]["inputs"]) == {"widht", "height"}
    assert "did you mean 'width'" in error["details"]["inputs"]["widht"][0]["fix"]
    [height] = error["details"]["inputs"]["height"]
    assert (height["node_id"], height["field"], height["reason"]) == (
        "1", "height", "invalid_input_type"
    )  # fmt: skip
    assert list(client.list_jobs()) == []


def test_an_input_names_an_uploaded_asset_never_a_local_file(
    sdk, start_sim, workers, tmp_path: Path
) -> None:
    """``inputs: {"image": <a file name>}`` is resolved against the caller's assets like a
    name in the workflow; a path to an image on the gateway's machine is not read: the job is
    refused as an image the ComfyUI does not have."""
    fast_farm(start_sim, workers)
    client = sdk("acme")
    local = tmp_path / "secret.png"
    local.write_bytes(png_bytes(11, 7))
    uploaded = tmp_path / "photo.png"
    uploaded.write_bytes(png_bytes(37, 21))
    client.assets.from_file(uploaded).commit()

    refused = post_with_inputs(client, load_invert_save("example.png"), {"image": str(local)})
    accepted = post_with_inputs(client, load_invert_save("example.png"), {"image": "photo.png"})

    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == "invalid_workflow"
    [problem] = refused.json()["error"]["details"]["node_errors"]["1"]
    assert problem["field"] == "image" and repr(str(local)) in problem["message"]  # as given
    assert accepted.status_code == 201, accepted.text
    job = client.jobs.get(accepted.json()["id"]).result()
    assert png_size(job.get_outputs("3")[0].to_bytes()) == (37, 21)


def test_inputs_for_a_malformed_workflow_are_a_workflow_error(sdk) -> None:
    """Inputs are applied only to a workflow of the right shape: a link to a node that is not
    there is ``422 invalid_workflow`` naming it, never a server error."""
    client = sdk("acme")
    workflow = {"1": {"class_type": "ImageInvert", "inputs": {"image": ["9", 0]}}}

    response = post_with_inputs(client, workflow, {"1.image": "x.png"})

    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_workflow"
    assert "'9'" in response.json()["error"]["message"]
