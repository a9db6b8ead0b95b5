"""The ComfyUI client: HTTP, WebSocket events, completion tracking, outputs.

No Celery and no storage in here. ``ComfyClient`` talks HTTP, ``EventStream`` reads the WebSocket,
``follow_prompt`` waits for one prompt, ``collect_outputs`` lists what it produced,
``comfy.schemas.fetch_schemas`` reads node schemas and model lists. ``EventStream`` is imported on
first use, so the HTTP side works without the worker extra's ``websocket-client`` (a producer
validating against a live ComfyUI).
"""

from comfyfarm.comfy.client import ComfyClient
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
    ResponseTooLarge,
    UnsafeOutputPath,
)
from comfyfarm.comfy.history import HistoryEntry
from comfyfarm.comfy.outputs import OutputFile, OutputValue, collect_outputs, safe_relative_path
from comfyfarm.comfy.prompts import QueuedPrompt
from comfyfarm.comfy.state import PromptLookup, PromptState, QueueSnapshot
from comfyfarm.comfy.tracker import PromptOutcome, PromptTracker, follow_prompt
from comfyfarm.comfy.uploads import UploadedFile

__all__ = [
    "ComfyClient",
    "ComfyError",
    "ComfyPermanent",
    "ComfyRequestError",
    "ComfyRetryable",
    "ComfyServerError",
    "ComfyUnavailable",
    "EventStream",
    "ExecutionFailed",
    "ExecutionInterrupted",
    "HistoryEntry",
    "NodeError",
    "OutputFile",
    "OutputValue",
    "PromptLookup",
    "PromptLost",
    "PromptOutcome",
    "PromptRejected",
    "PromptState",
    "PromptTimeout",
    "PromptTracker",
    "QueueSnapshot",
    "QueuedPrompt",
    "ResponseTooLarge",
    "UnsafeOutputPath",
    "UploadedFile",
    "collect_outputs",
    "follow_prompt",
    "safe_relative_path",
]


def __getattr__(name: str) -> object:
    if name == "EventStream":
        from comfyfarm.comfy.ws import EventStream

        return EventStream
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
