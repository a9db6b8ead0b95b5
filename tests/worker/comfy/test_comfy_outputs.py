"""Output collection from history entries, history parsing, and refusal of unsafe file names."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest
from comfy_traces import history_entry, load

from comfyfarm.comfy.errors import ExecutionFailed, ExecutionInterrupted, UnsafeOutputPath
from comfyfarm.comfy.history import HistoryEntry
from comfyfarm.comfy.outputs import (
    OutputFile,
    OutputValue,
    collect_outputs,
    output_files,
    safe_relative_path,
)


def recorded_entry(trace_name: str, prompt_id: str) -> HistoryEntry:
    body = history_entry(load(trace_name), prompt_id)
    return HistoryEntry.from_dict(prompt_id, body[prompt_id])


def test_saveimage_output_from_history():
    """Trace 01: one SaveImage file with empty subfolder, type output."""
    entry = recorded_entry("01", load("01")["prompt_id"])
    assert entry.succeeded and entry.completed and entry.failure() is None
    assert collect_outputs(entry.outputs) == [
        OutputFile("2", "images", 0, "proto_success_00001_.png", "", "output")
    ]


def test_batch_gives_two_files_with_indexes():
    """Trace 03: a batch of two gives indexes 0 and 1 of the same node."""
    entry = recorded_entry("03", load("03")["prompt_id"])
    files = output_files(entry.outputs)
    assert [(f.node_id, f.index, f.filename) for f in files] == [
        ("3", 0, "proto_invert_00001_.png"),
        ("3", 1, "proto_invert_00002_.png"),
    ]


def test_preview_is_a_temp_file():
    """Trace 04: PreviewImage output has type temp."""
    entry = recorded_entry("04", load("04")["prompt_id"])
    (preview,) = output_files(entry.outputs)
    assert preview.type == "temp" and preview.filename.startswith("ComfyUI_temp_")


def test_error_history_keeps_earlier_outputs_and_the_failure():
    """Trace 07: status error, the output of the node that ran before the error, the failure."""
    first, _ = load("07")["prompt_ids"]
    entry = recorded_entry("07", first)
    assert entry.status_str == "error" and not entry.completed
    assert [f.filename for f in output_files(entry.outputs)] == ["proto_before_err_00001_.png"]
    failure = entry.failure()
    assert isinstance(failure, ExecutionFailed)
    assert failure.node_type == "LoadImage" and failure.exception_type.startswith("PIL.")


def test_interrupted_history_is_an_interruption():
    """Trace 09: interrupted runs are status error with execution_interrupted in messages."""
    prompt_id = load("09")["prompt_ids"]["09a"]
    failure = recorded_entry("09", prompt_id).failure()
    assert isinstance(failure, ExecutionInterrupted) and failure.node_id == "12"


def test_cached_nodes_from_history_messages():
    """Trace 02: execution_cached in history messages lists the cached nodes."""
    entry = recorded_entry("02", load("02")["prompt_id"])
    assert entry.cached_nodes == ["1", "2"]
    assert entry.extra_data["client_id"]


def test_every_output_kind_is_collected():
    """gifs, audio, text, result and custom keys: files where there is a filename; ``animated``
    is a flag of the node's files, never an output of its own."""
    outputs = {
        "20": {
            "images": [{"filename": "vid_00001_.mp4", "subfolder": "video", "type": "output"}],
            "animated": [True],
        },
        "21": {
            "gifs": [
                {
                    "filename": "AnimateDiff_00001.mp4",
                    "subfolder": "",
                    "type": "output",
                    "format": "video/h264-mp4",
                    "frame_rate": 8.0,
                    "fullpath": "/ComfyUI/output/AnimateDiff_00001.mp4",
                }
            ]
        },
        "22": {
            "audio": [{"filename": "audio_00001_.flac", "subfolder": "audio", "type": "output"}]
        },
        "23": {"text": ["some string"]},
        "24": {"result": ["mesh/model_00001_.glb", {"camera": "c"}]},
        "25": {"my_meshes": [{"filename": "m.glb", "subfolder": "3d"}], "score": 0.5},
    }
    collected = collect_outputs(outputs)
    files = {(c.node_id, c.kind): c for c in collected if isinstance(c, OutputFile)}
    values = [(c.node_id, c.kind, c.value) for c in collected if isinstance(c, OutputValue)]
    assert set(files) == {("20", "images"), ("21", "gifs"), ("22", "audio"), ("25", "my_meshes")}
    assert files[("21", "gifs")].extra == {
        "format": "video/h264-mp4",
        "frame_rate": 8.0,
        "fullpath": "/ComfyUI/output/AnimateDiff_00001.mp4",
    }
    assert files[("25", "my_meshes")].type == "output"  # missing type defaults to output
    assert files[("22", "audio")].relative_path == PurePosixPath("audio/audio_00001_.flac")
    assert files[("20", "images")].animated and not files[("21", "gifs")].animated
    assert values == [
        ("23", "text", "some string"),
        ("24", "result", "mesh/model_00001_.glb"),
        ("24", "result", {"camera": "c"}),
        ("25", "score", 0.5),
    ]


@pytest.mark.parametrize(
    "subfolder,filename",
    [
        ("", "../escape.png"),
        ("", ".."),
        ("", "."),
        ("", "/etc/passwd"),
        ("/etc", "passwd"),
        ("", "a\x00.png"),
        ("sub\x00", "a.png"),
        ("", "a\\..\\b.png"),
        ("..\\..", "a.png"),
        ("", "C:evil.png"),
        ("C:", "a.png"),
        ("", ""),
        ("", "   "),
        ("a/../../b", "x.png"),
        ("..", "x.png"),
        ("", "sub/../x.png"),
        ("", "sub/"),
        ("", "line\nbreak.png"),
    ],
)
def test_unsafe_names_are_refused(subfolder, filename):
    """Anything that could escape the target folder raises UnsafeOutputPath."""
    with pytest.raises(UnsafeOutputPath) as caught:
        safe_relative_path(subfolder, filename)
    assert caught.value.reason


def test_unsafe_name_in_history_refuses_collection():
    """collect_outputs refuses a history entry with a malicious file name."""
    outputs = {"9": {"images": [{"filename": "../../x.png", "subfolder": "", "type": "output"}]}}
    with pytest.raises(UnsafeOutputPath):
        collect_outputs(outputs)
    with pytest.raises(UnsafeOutputPath):
        collect_outputs({"9": {"images": [{"filename": 5, "subfolder": ""}]}})


@pytest.mark.parametrize(
    "subfolder,filename,expected",
    [
        ("", "a.png", "a.png"),
        ("jobs/123", "ComfyUI_00001_.png", "jobs/123/ComfyUI_00001_.png"),
        ("jobs/123/", "a b (1).png", "jobs/123/a b (1).png"),
        ("", "..hidden..png", "..hidden..png"),
        ("x", "12:30.png", "x/12:30.png"),
    ],
)
def test_safe_names_are_joined(subfolder, filename, expected):
    """Ordinary names, subfolders and odd-but-harmless characters are accepted."""
    assert safe_relative_path(subfolder, filename) == PurePosixPath(expected)


def test_history_entry_tolerates_missing_parts():
    """A sparse history entry still parses (defaults), with no failure when not 'error'."""
    entry = HistoryEntry.from_dict("p", {"outputs": "bad", "status": None})
    assert entry.outputs == {} and entry.status_str == "" and entry.failure() is None
    failed = HistoryEntry.from_dict("p", {"status": {"status_str": "error", "messages": []}})
    assert isinstance(failed.failure(), ExecutionFailed)


def test_animated_false_marks_nothing_and_adds_no_value():
    """``animated: [false]`` (a single-frame SaveAnimatedWEBP) is no output and no flag."""
    outputs = {"9": {"images": [{"filename": "a.webp", "subfolder": ""}], "animated": [False]}}
    (item,) = collect_outputs(outputs)
    assert isinstance(item, OutputFile) and not item.animated
