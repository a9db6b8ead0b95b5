"""`comfyfarm bench` end to end on tiny loads: the JSON shape and sane values, no timing targets."""

from __future__ import annotations

import json
import re

import pytest

from comfyfarm.cli import main


def json_lines(capsys: pytest.CaptureFixture[str]) -> list[dict]:
    out = capsys.readouterr().out
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_throughput_runs_every_mode_and_reports_figures(capsys: pytest.CaptureFixture[str]) -> None:
    """2 instances x 50 ms x 8 jobs: every mode finishes every job; ratio only for non-native."""
    code = main(["bench", "--instances", "2", "--job-ms", "50", "--jobs", "8", "--json"])
    rows = json_lines(capsys)
    assert code == 0
    assert [row["mode"] for row in rows] == ["native", "naive", "farm"]
    for row in rows:
        assert row["jobs"] == 8 and row["failed"] == 0 and row["errors"] == []
        assert row["executions"] == 8 and row["cached_runs"] == 0
        assert 0 < row["gpu_utilisation"] <= 1
        assert row["throughput"] > 0 and row["wall_seconds"] > 0
        assert row["idle_gap_ms"]["count"] == 6  # 2 instances x (4 jobs - 1)
        assert row["latency_ms"]["count"] == 8
        assert row["latency_ms"]["p50"] <= row["latency_ms"]["p99"]
        assert row["cpu"]["client_seconds"] >= 0
    native, naive, farm = rows
    assert native["ratio_to_native"] is None
    assert naive["ratio_to_native"] > 0 and farm["ratio_to_native"] > 0
    memory = farm["worker_memory"]
    assert memory["idle"]["processes"] >= 2 and memory["peak"]["rss_mb"] > 0
    assert farm["worker_run_ms"]["count"] == 8
    assert set(farm["gap_phases_ms"]) == {"collect", "handoff", "submit"}
    assert farm["gap_phases_ms"]["submit"]["count"] == 6


def test_serial_farm_has_one_job_in_flight(capsys: pytest.CaptureFixture[str]) -> None:
    """--serial with 1 instance at 0 ms: every job done; the table is printed without --json."""
    code = main(
        ["bench", "throughput", "--instances", "1", "--job-ms", "0", "--jobs", "4",
         "--modes", "farm,native", "--serial"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    lines = out.splitlines()
    assert "one job in flight" in lines[0]
    assert [line.split()[0] for line in lines[2:4]] == ["native", "farm"]


def test_unknown_mode_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """A typo in --modes exits 2 before anything is started."""
    assert main(["bench", "--modes", "native,nope"]) == 2
    assert "nope" in capsys.readouterr().err


def test_enqueue_reports_its_rate(redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """bench enqueue with a small count on the test broker reports jobs and jobs/s."""
    code = main(["bench", "enqueue", "--count", "210", "--broker-url", redis_url, "--json"])
    (row,) = json_lines(capsys)
    assert code == 0
    assert row["bench"] == "enqueue" and row["jobs"] == 200 and row["queued_after"] == 210
    assert row["jobs_per_second"] > 0


def test_outputs_streams_both_paths(capsys: pytest.CaptureFixture[str]) -> None:
    """bench outputs with 5 MB: every path's speed, the ratios and the RSS growth are reported."""
    code = main(["bench", "outputs", "--size-mb", "5", "--repeats", "1", "--json"])
    (row,) = json_lines(capsys)
    assert code == 0
    assert row["bench"] == "outputs" and row["size_mb"] == 5
    assert row["farm_mb_s"] > 0 and row["plain_mb_s"] > 0 and row["plain_fsync_mb_s"] > 0
    assert row["farm_no_digest_mb_s"] > 0 and row["farm_sha256_mb_s"] > 0
    assert row["farm_no_fsync_mb_s"] > 0
    assert row["ratio_no_fsync"] > 0 and row["ratio_no_fsync_durable"] > 0
    low, high = row["spread_mb_s"]["farm_no_fsync"]
    assert 0 < low <= row["farm_no_fsync_mb_s"] <= high
    assert row["ratio"] > 0 and row["ratio_no_digest"] > 0 and row["ratio_sha256"] > 0
    assert row["farm_rss_growth_mb"] >= 0
    assert set(row["cpu_ms_per_mb"]) == {
        "plain", "farm blake3", "farm sha256", "farm none", "farm no fsync",
    }  # fmt: skip


def test_outputs_reports_the_opt_out_and_where_the_time_goes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """bench outputs reports the farm path without fsync (COMFYFARM_STORAGE_FSYNC=0) with its
    ratios against both plain downloads, and each step of the copy timed on its own."""
    code = main(["bench", "outputs", "--size-mb", "3", "--repeats", "2"])
    captured = capsys.readouterr()
    text = captured.out
    assert code == 0, captured.err
    assert re.search(
        r"no fsync \(COMFYFARM_STORAGE_FSYNC=0\) +[\d,]+ MB/s \(runs [\d,]+-[\d,]+\)", text
    )
    for reference in ("plain download", "plain download \\+ fsync"):
        assert re.search(rf"against the {reference}: durable \(default\) [\d.]+, no fsync", text)
    for step in ("download", "blake3", "page-cache write", "write-behind write"):
        assert re.search(rf"{step} [\d,]+ MB/s", text), step
    for step in ("fsync after it", "its fsync"):
        assert re.search(rf"{step} \d+ ms", text), step
