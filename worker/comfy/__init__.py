"""The ComfyUI client: HTTP, WebSocket events, completion tracking, outputs.

No Celery and no storage in here. ``ComfyClient`` talks HTTP, ``EventStream`` reads the WebSocket,
``follow_prompt`` waits for one prompt, ``collect_outputs`` lists what it produced.
"""

from worker.comfy.client import ComfyClient
from worker.comfy.errors import (
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
from worker.comfy.history import HistoryEntry
from worker.comfy.outputs import OutputFile, OutputValue, collect_outputs, safe_relative_path
from worker.comfy.prompts import QueuedPrompt
from worker.comfy.state import PromptLookup, PromptState, QueueSnapshot
from worker.comfy.tracker import PromptOutcome, PromptTracker, follow_prompt
from worker.comfy.uploads import UploadedFile
from worker.comfy.ws import EventStream

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
    "UnsafeOutputPath",
    "UploadedFile",
    "collect_outputs",
    "follow_prompt",
    "safe_relative_path",
]
