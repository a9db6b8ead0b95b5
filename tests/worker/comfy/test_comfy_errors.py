"""The error tree: retryable versus permanent as types, data in fields, JSON-safe to_dict()."""

from __future__ import annotations

import copy
import json

import pytest

from comfyfarm.comfy.errors import (
    ComfyError,
    ComfyPermanent,
    ComfyRequestError,
    ComfyRetryable,
    ComfyServerError,
    ComfyUnavailable,
    ExecutionFailed,
    ExecutionInterrupted,
    NodeError,
    PromptLost,
    PromptRejected,
    PromptTimeout,
    UnsafeOutputPath,
)

NODE_ERROR = NodeError(
    node_id="2",
    class_type="ImageScale",
    error_type="value_not_in_list",
    message="Value not in list",
    details="upscale_method: 'x' not in [...]",
    input_name="upscale_method",
    received_value="x",
)

RETRYABLE = [
    ComfyUnavailable(url="http://c", reason="refused"),
    ComfyServerError(url="http://c/prompt", status=500, body="trouble"),
    PromptLost(prompt_id="p"),
]
PERMANENT = [
    PromptRejected(
        error_type="prompt_outputs_failed_validation",
        message="Prompt outputs failed validation",
        details="",
        node_errors=[NODE_ERROR],
        partial=False,
    ),
    ExecutionFailed(
        prompt_id="p",
        node_id="3",
        node_type="LoadImage",
        exception_type="PIL.UnidentifiedImageError",
        exception_message="cannot identify image file\n",
        traceback=["  File x\n"],
    ),
    ExecutionInterrupted(prompt_id="p", node_id="12", node_type="ImageBlur"),
    PromptTimeout(prompt_id="p", kind="stall", seconds=3.0),
    UnsafeOutputPath(filename="../x", subfolder="", reason="path component '..'"),
    ComfyRequestError(url="http://c/view", status=404, body=""),
]


@pytest.mark.parametrize("error", RETRYABLE, ids=lambda e: type(e).__name__)
def test_retryable_errors(error):
    """Infrastructure failures are ComfyRetryable under ComfyError."""
    assert isinstance(error, ComfyRetryable) and not isinstance(error, ComfyPermanent)
    assert isinstance(error, ComfyError)


@pytest.mark.parametrize("error", PERMANENT, ids=lambda e: type(e).__name__)
def test_permanent_errors(error):
    """Job failures are ComfyPermanent under ComfyError."""
    assert isinstance(error, ComfyPermanent) and not isinstance(error, ComfyRetryable)


@pytest.mark.parametrize("error", RETRYABLE + PERMANENT, ids=lambda e: type(e).__name__)
def test_to_dict_is_json_safe_and_complete(error):
    """to_dict has the class name, the whole message and every field, and survives json.dumps.

    PromptRejected's own ``message`` field (ComfyUI's one-liner) is kept as ``comfy_message``.
    """
    data = error.to_dict()
    assert data["type"] == type(error).__name__
    assert data["message"] == str(error)
    assert set(error.fields) - {"message"} <= set(data)
    assert json.loads(json.dumps(data)) == data


@pytest.mark.parametrize("error", RETRYABLE + PERMANENT, ids=lambda e: type(e).__name__)
def test_errors_copy_with_their_fields(error):
    """Keyword-only errors survive copy.deepcopy (what pickle-like tools do) with equal data."""
    clone = copy.deepcopy(error)
    assert type(clone) is type(error) and clone.to_dict() == error.to_dict()


def test_fields_are_keyword_only():
    """Positional construction is refused: data fields are always named."""
    with pytest.raises(TypeError):
        PromptLost("p")  # type: ignore[misc]


def test_rejection_message_lists_node_errors():
    """str(PromptRejected) names each failing node and input."""
    text = str(PERMANENT[0])
    assert "node 2 (ImageScale) input 'upscale_method'" in text
    assert PERMANENT[0].to_dict()["node_errors"][0]["input_name"] == "upscale_method"
    assert "node 2 (ImageScale) input 'upscale_method'" in PERMANENT[0].to_dict()["message"]
