"""Progress bars: one per job, and a one-screen summary view when a sweep has many jobs."""

from __future__ import annotations

import io

from comfyfarm.progressbar import MAX_LINES, ProgressBars, render_line, summary_line

JOB = "0123456789abcdef"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_line_shows_bar_percent_phase_node_and_worker() -> None:
    line = render_line(JOB, {"phase": "running", "percent": 50.0, "node_type": "KSampler",
                             "value": 10, "max": 20, "worker": "gpu0"})  # fmt: skip
    assert line.startswith("01234567 [############------------]  50.0% running KSampler 10/20")
    assert line.endswith("@gpu0")


def test_few_jobs_get_one_bar_each_in_order() -> None:
    bars = ProgressBars(Terminal())
    for n in range(3):
        bars.update(f"job{n}-id", {"phase": "queued"})
    bars.update("job1-id", {"phase": "running", "percent": 10.0})
    assert [line[:4] for line in bars.view()] == ["job0", "job1", "job2"]
    assert "running" in bars.view()[1]


def test_many_jobs_show_a_summary_and_only_the_running_bars() -> None:
    """A sweep larger than a screen: one summary line, the running jobs, a fixed-height block."""
    bars = ProgressBars(Terminal())
    jobs = [f"{n:04d}-job" for n in range(100)]
    for job in jobs:
        bars.update(job, {"phase": "queued"})
    for job in jobs[:3]:
        bars.finish(job, "succeeded")
    bars.finish(jobs[3], "failed")
    for job in jobs[4:6]:
        bars.update(job, {"phase": "running", "percent": 30.0})
    view = bars.view()
    assert len(view) == MAX_LINES
    assert view[0] == "4/100 done (3 succeeded, 1 failed) · 2 running · 94 queued"
    assert [line[:8] for line in view[1:3]] == ["0004-job", "0005-job"]
    assert all(line == "" for line in view[3:])


def test_summary_counts_every_final_outcome() -> None:
    phases = ["succeeded", "cancelled", "timeout", "running", "submitted", "queued"]
    assert summary_line(phases) == (
        "3/6 done (1 succeeded, 1 cancelled, 1 timeout) · 2 running · 1 queued"
    )


def test_a_pipe_gets_one_line_per_phase_change() -> None:
    """Logs stay readable: no cursor movement, a line only when the phase changes."""
    out = io.StringIO()
    bars = ProgressBars(out)
    bars.update(JOB, {"phase": "running", "percent": 10.0})
    bars.update(JOB, {"phase": "running", "percent": 20.0})
    bars.finish(JOB, "succeeded")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "\x1b" not in out.getvalue()
    assert lines[1].endswith("succeeded")
