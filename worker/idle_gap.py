"""The pipeline idle gap: how long a worker's ComfyUI sat idle before a prompt that was waiting.

ComfyUI runs one prompt at a time. Between the end of one prompt and the start of the next its
GPU does nothing; when the next job was already waiting at that moment, that idle time is the
farm's doing (collecting, handing over, uploading, submitting), the figure the benchmarks report
as ``idle_gap_ms`` (``comfyfarm_bench.timeline``).

Measured from ComfyUI's own clock, so neither the worker's scheduling nor clock skew between
ComfyUI and the worker enters the gap itself:

- ``measure_span`` (the runner, once a prompt it submitted succeeded): the prompt's start and
  end (``timestamp`` of ``execution_start`` and of ``execution_success``), and the end of the
  prompt ComfyUI finished just before it. ComfyUI writes a prompt's history when it ends and
  before it takes the next, so in ``GET /history?max_items=N`` (completion order) the entry
  before ours is its predecessor, whoever submitted it (another pool process, a warm-up).
- ``pipeline_gap`` (the metrics, from the result's ``Timings``): ``start - free_since`` when the
  job was waiting when ComfyUI became free: its queue-arrival time (``enqueued_at``, the
  producer's clock) is not after the predecessor's end. A job that arrived later found the GPU
  idle for lack of work: no gap. Retries are left out (their wait is a deliberate backoff).

Not measured: a ComfyUI's first prompt (no predecessor in its history), a prompt followed on
another worker's ComfyUI, prompts that failed, and a ComfyUI without execution timestamps.
Clock skew between the producer and ComfyUI only shifts which jobs count as waiting.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from comfyfarm.comfy.client import ComfyClient
from comfyfarm.comfy.errors import ComfyError
from comfyfarm.comfy.history import HistoryEntry

log = logging.getLogger(__name__)

#: History entries read to find the predecessor: ours, the one before, and room for prompts that
#: finished after ours before the runner asked (it asks before collecting the outputs).
RECENT_PROMPTS = 4


@dataclass(frozen=True)
class PromptSpan:
    """When ComfyUI ran one prompt and when it became free before it (its clock, seconds)."""

    started_at: float
    finished_at: float
    free_since: float | None = None


def measure_span(client: ComfyClient, history: HistoryEntry) -> PromptSpan | None:
    """Our prompt's span and its predecessor's end, best effort (None: no timestamps)."""
    span = history.execution_span()
    if span is None:
        return None
    started, finished = span
    try:
        recent = client.recent_history(RECENT_PROMPTS)
    except ComfyError as exc:  # a figure, never a reason to fail the job
        log.debug("no recent history for the idle gap of %s: %s", history.prompt_id, exc)
        return PromptSpan(started, finished)
    ids = [entry.prompt_id for entry in recent]
    if history.prompt_id not in ids or ids.index(history.prompt_id) == 0:
        return PromptSpan(started, finished)
    previous = recent[ids.index(history.prompt_id) - 1].execution_span()
    if previous is None or previous[1] > started:
        return PromptSpan(started, finished)
    return PromptSpan(started, finished, free_since=previous[1])


def pipeline_gap(result: dict[str, Any]) -> float | None:
    """Seconds ComfyUI sat idle before this job's prompt while the job was waiting, from a
    ``JobResult`` dict; None when not measured or when the job was not waiting."""
    timings = result.get("timings")
    if not isinstance(timings, dict) or result.get("attempts", 1) != 1:
        return None
    free_since = _seconds(timings.get("comfy_free_since"))
    started = _seconds(timings.get("prompt_started_at"))
    enqueued = _seconds(timings.get("enqueued_at"))
    if free_since is None or started is None or enqueued is None or enqueued > free_since:
        return None
    return max(0.0, started - free_since)


def _seconds(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return float(value)
