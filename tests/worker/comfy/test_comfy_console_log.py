"""comfy.console_log: cutting one prompt's lines out of ComfyUI's console ring."""

from __future__ import annotations

from comfyfarm.comfy.console_log import LogEntry, parse_entries, prompt_slice

END = "Prompt executed in 0.50 seconds\n"


def lines(*texts: str) -> list[LogEntry]:
    return [LogEntry(f"t{index}", text) for index, text in enumerate(texts)]


RING = lines(
    "boot\n",  # 0: before submission
    "got prompt\n",  # 1: ours, while the previous prompt still runs
    "previous: sampling\n",  # 2
    END,  # 3: the previous prompt's end
    "ours: loading model\n",  # 4
    "ours: sampling\n",  # 5
    END,  # 6: ours
    "got prompt\n",  # 7: the next prompt
    "next: loading model\n",  # 8
)


def texts(entries: list[LogEntry]) -> list[str]:
    return [entry.m for entry in entries]


def test_previous_and_next_prompts_lines_are_cut_off() -> None:
    """The previous prompt's tail (ended before ours started) and the next prompt's head are out."""
    piece = prompt_slice(RING[:1], RING[:5], RING)
    assert texts(piece.entries) == ["ours: loading model\n", "ours: sampling\n", END]
    assert piece.complete


def test_prompt_that_ended_before_the_start_snapshot_keeps_its_lines() -> None:
    """A prompt already over when its start was seen still gets its lines, its end line last."""
    piece = prompt_slice(RING[:4], RING[:7], RING[:7])
    assert texts(piece.entries) == ["ours: loading model\n", "ours: sampling\n", END]


def test_without_a_start_snapshot_the_first_end_line_closes_the_slice() -> None:
    """No execution_start seen: from submission to the first end line."""
    piece = prompt_slice(RING[3:4], None, RING)
    assert texts(piece.entries) == ["ours: loading model\n", "ours: sampling\n", END]


def test_a_wrapped_ring_is_marked_incomplete() -> None:
    """When the submission snapshot's last line has left the ring, the slice says so."""
    piece = prompt_slice(lines("gone\n"), None, RING[4:])
    assert not piece.complete and texts(piece.entries)[-1] == END


def test_malformed_answers_give_no_log() -> None:
    """Anything but {entries: [{t, m}]} is no log; bad entries are skipped."""
    assert parse_entries([]) is None and parse_entries({"entries": "x"}) is None
    assert parse_entries({"entries": [{"t": "t0", "m": "a\n"}, {"m": 3}, "x"]}) == lines("a\n")


def test_prompts_ahead_in_the_queue_are_skipped_by_their_end_lines() -> None:
    """With one prompt ahead at submission, the slice starts after that prompt's end line."""
    piece = prompt_slice(RING[:1], None, RING, ahead=1)
    assert texts(piece.entries) == ["ours: loading model\n", "ours: sampling\n", END]
    assert texts(prompt_slice(RING[3:4], None, RING, ahead=0).entries)[0] == "ours: loading model\n"
