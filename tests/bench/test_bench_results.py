"""``comfyfarm bench results``: the README table's rendering and its in-place update."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from comfyfarm_bench.results import END, START, Row, machine_line, render, replace_section

from comfyfarm.cli import main

ROWS = [
    Row("8 instances × 1 s, 160 jobs", "farm / native **0.991**", "≥ 0.99", "0.0 / 0.1 ms", "x"),
    Row("`submit_many`", "**6,000 jobs/s**", "≥ 5,000 jobs/s", "", "a | b"),
]


def test_render_makes_one_markdown_table_with_its_caption() -> None:
    """A caption naming the machine, a header, a separator and one line per row."""
    block = render(ROWS, measured_on="2026-11-26 on 2 cores")
    lines = block.splitlines()
    assert lines[0].startswith("Measured 2026-11-26 on 2 cores;")
    assert lines[2].startswith("| run | figure | target |") and lines[3].startswith("|---|")
    assert (
        lines[4]
        == "| 8 instances × 1 s, 160 jobs | farm / native **0.991** | ≥ 0.99 | 0.0 / 0.1 ms | x |"
    )
    assert lines[5].endswith("| a / b |")  # a pipe inside a cell would split it


def test_replace_section_changes_only_what_is_between_the_markers() -> None:
    """Text before and after the markers stays byte for byte; the old table is gone."""
    text = f"# Title\nintro\n{START}\nold table\n{END}\nafter\n"
    updated = replace_section(text, "NEW")
    assert updated == f"# Title\nintro\n{START}\nNEW\n{END}\nafter\n"
    assert replace_section(updated, "NEWER").count(START) == 1


def test_replace_section_needs_both_markers_in_order() -> None:
    """A file without the markers (or with them swapped) is refused, saying which lines."""
    for text in ("no markers", f"{END}\n{START}", f"{START} only"):
        with pytest.raises(ValueError, match="bench-results"):
            replace_section(text, "x")


def test_machine_line_names_date_cores_and_python() -> None:
    line = machine_line(datetime.date(2026, 11, 26))
    assert line.startswith("2026-11-26 on ") and " cores, " in line and "Python 3." in line


def test_write_refuses_a_file_without_markers_before_measuring(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--write checks the file first: a missing marker costs nothing, not minutes of runs."""
    readme = tmp_path / "README.md"
    readme.write_text("# no markers here\n")
    assert main(["bench", "results", "--write", str(readme)]) == 2
    assert "bench-results" in capsys.readouterr().err
    assert readme.read_text() == "# no markers here\n"


def test_the_readme_has_the_markers() -> None:
    """The project README can be regenerated in place."""
    readme = Path(__file__).resolve().parents[2] / "README.md"
    replace_section(readme.read_text(encoding="utf-8"), "x")
