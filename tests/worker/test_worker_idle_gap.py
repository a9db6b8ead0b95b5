"""The pipeline idle gap: ComfyUI's times of a prompt and its predecessor, and when a gap counts."""

from __future__ import annotations

from comfyfarm.comfy.errors import ComfyUnavailable
from comfyfarm.comfy.history import HistoryEntry
from comfyfarm.worker.idle_gap import PromptSpan, measure_span, pipeline_gap


def entry(prompt_id: str, start_ms: int | None, end_ms: int | None, end: str = "success"):
    messages: list[list] = []
    if start_ms is not None:
        messages.append(["execution_start", {"prompt_id": prompt_id, "timestamp": start_ms}])
    if end_ms is not None:
        messages.append([f"execution_{end}", {"prompt_id": prompt_id, "timestamp": end_ms}])
    return HistoryEntry.from_dict(
        prompt_id, {"outputs": {}, "status": {"status_str": "success", "messages": messages}}
    )


class RecentHistory:
    """A client whose ``recent_history`` answers a fixed list (or raises)."""

    def __init__(self, entries: list[HistoryEntry] | None) -> None:
        self.entries = entries

    def recent_history(self, max_items: int) -> list[HistoryEntry]:
        if self.entries is None:
            raise ComfyUnavailable(url="http://comfy", reason="down")
        return self.entries[-max_items:]


def result(enqueued: float, free_since: float, started: float, attempts: int = 1) -> dict:
    return {
        "attempts": attempts,
        "timings": {"enqueued_at": enqueued, "comfy_free_since": free_since,
                    "prompt_started_at": started, "prompt_finished_at": started + 1},
    }  # fmt: skip


def test_execution_span_reads_comfyui_timestamps_in_seconds() -> None:
    """execution_start and the final message's timestamps (ms) give the span in seconds."""
    assert entry("a", 1_000_500, 1_002_000).execution_span() == (1000.5, 1002.0)
    assert entry("a", 1_000_000, 1_000_250, end="error").execution_span() == (1000.0, 1000.25)


def test_execution_span_is_none_without_timestamps() -> None:
    """A history without execution_start or an end message (older ComfyUI) has no span."""
    assert entry("a", None, 1_000_000).execution_span() is None
    assert entry("a", 1_000_000, None).execution_span() is None


def test_the_predecessor_is_the_entry_completed_just_before_ours() -> None:
    """Among the recent history, the entry before ours gives free_since; later ones are ignored."""
    ours = entry("b", 2_000_300, 2_001_000)
    client = RecentHistory([entry("a", 1_999_000, 2_000_000), ours,
                            entry("c", 2_001_010, 2_001_020)])  # fmt: skip
    assert measure_span(client, ours) == PromptSpan(2000.3, 2001.0, free_since=2000.0)


def test_a_first_prompt_has_no_predecessor() -> None:
    """Ours first in ComfyUI's history (fresh ComfyUI): the span, but no free_since."""
    ours = entry("b", 2_000_300, 2_001_000)
    assert measure_span(RecentHistory([ours]), ours) == PromptSpan(2000.3, 2001.0)


def test_an_unreadable_history_never_fails_the_measure() -> None:
    """ComfyUI gone while reading the recent history: the span without free_since."""
    ours = entry("b", 2_000_300, 2_001_000)
    assert measure_span(RecentHistory(None), ours) == PromptSpan(2000.3, 2001.0)


def test_a_prompt_without_timestamps_is_not_measured() -> None:
    assert measure_span(RecentHistory([]), entry("b", None, None)) is None


def test_a_waiting_job_counts_its_gap() -> None:
    """Enqueued before ComfyUI became free: the gap is start - free_since."""
    assert pipeline_gap(result(enqueued=90.0, free_since=100.0, started=100.25)) == 0.25


def test_a_job_that_arrived_after_comfyui_became_free_is_no_gap() -> None:
    """The GPU idled for lack of work, not because of the farm."""
    assert pipeline_gap(result(enqueued=100.5, free_since=100.0, started=100.75)) is None


def test_retries_and_unmeasured_results_count_no_gap() -> None:
    """A retry's wait is its backoff; a result without ComfyUI times tells nothing."""
    assert pipeline_gap(result(90.0, 100.0, 100.25, attempts=2)) is None
    assert pipeline_gap(result(90.0, 0.0, 100.25)) is None
    assert pipeline_gap({"timings": {"enqueued_at": 1.0}}) is None
    assert pipeline_gap({}) is None
