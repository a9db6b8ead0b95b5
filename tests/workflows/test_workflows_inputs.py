"""Input files for image-to-image: InputRef, checks and validation (workflows.inputs)."""

from __future__ import annotations

import pytest

from comfyfarm.workflows import InputFileError, InputRef, prepare_jobs
from comfyfarm.workflows import inputs as inputs_module
from comfyfarm.workflows.inputs import image_format


def test_local_image_becomes_an_input_ref(schema, png_file):
    """image=path records InputRef(node, input, absolute path) and puts the name in the prompt."""
    [job] = prepare_jobs(
        "sd15_image2image", schema=schema, params=[f"image={png_file}"], validate=False
    )
    assert job.inputs == [InputRef("2", "image", str(png_file.resolve()))]
    assert job.prompt["2"]["inputs"]["image"] == "input.png"
    assert job.params == {"image": str(png_file.resolve())}


def test_url_is_recorded_as_given(schema):
    """An http(s) URL is recorded for the worker to fetch."""
    url = "https://example.com/images/cat.jpg?size=large"
    [job] = prepare_jobs("sd15_image2image", schema=schema, params=[f"image={url}"], validate=False)
    assert job.inputs == [InputRef("2", "image", url)]
    assert job.prompt["2"]["inputs"]["image"] == "cat.jpg"


def test_name_already_on_the_server_stays_a_value(schema):
    """example.png is in the server's input list: no upload, plain value."""
    [job] = prepare_jobs(
        "sd15_image2image", schema=schema, params=["image=example.png"], validate=False
    )
    assert job.inputs == [] and job.prompt["2"]["inputs"]["image"] == "example.png"


def test_missing_local_file_is_an_error(schema, tmp_path):
    """A path that does not exist is refused before queueing."""
    with pytest.raises(InputFileError, match="does not exist"):
        prepare_jobs(
            "sd15_image2image",
            schema=schema,
            params=[f"image={tmp_path / 'nope.png'}"],
            validate=False,
        )


def test_a_file_that_is_not_an_image_is_refused(schema, tmp_path):
    """Magic bytes decide: a text file named .png is not an image."""
    fake = tmp_path / "fake.png"
    fake.write_text("hello")
    with pytest.raises(InputFileError, match="does not look like an image"):
        prepare_jobs("sd15_image2image", schema=schema, params=[f"image={fake}"], validate=False)


def test_too_big_files_are_refused(schema, png_file, monkeypatch):
    """Files above MAX_INPUT_BYTES are refused with the limit."""
    monkeypatch.setattr(inputs_module, "MAX_INPUT_BYTES", 10)
    with pytest.raises(InputFileError, match="upload limit"):
        prepare_jobs(
            "sd15_image2image", schema=schema, params=[f"image={png_file}"], validate=False
        )


def test_a_directory_is_not_an_input_file(schema, tmp_path):
    """A directory path is refused."""
    with pytest.raises(InputFileError, match="not a regular file"):
        prepare_jobs(
            "sd15_image2image", schema=schema, params=[f"image={tmp_path}"], validate=False
        )


def test_uploaded_inputs_are_not_checked_against_the_server_list(schema, png_file):
    """Validation skips an input the worker will upload (only the model is missing)."""
    with pytest.raises(Exception) as caught:
        prepare_jobs("sd15_image2image", schema=schema, params=[f"image={png_file}"])
    kinds = {(p.node_id, p.kind) for p in caught.value.problems}
    assert kinds == {("1", "missing_model")}


def test_input_files_work_without_a_schema(png_file):
    """Without node schemas LoadImage.image is still known as an upload input."""
    [job] = prepare_jobs("sd15_image2image", schema=None, params=[f"image={png_file}"])
    assert job.inputs[0].node_id == "2"


@pytest.mark.parametrize(
    ("head", "name"),
    [
        (b"\x89PNG\r\n\x1a\n", "PNG"),
        (b"\xff\xd8\xff\xe0", "JPEG"),
        (b"GIF89a", "GIF"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "WebP"),
        (b"BM\x00\x00", "BMP"),
        (b"II*\x00", "TIFF"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", None),
        (b"%PDF-1.7", None),
    ],
)
def test_image_formats_by_magic_bytes(head, name):
    """The first bytes name the format."""
    assert image_format(head) == name
