"""The command line: help, version, and direct mode (``comfyfarm run``) against a real simulator."""

from __future__ import annotations

import json
from pathlib import Path

import blake3
import pytest

from comfyfarm import __version__
from comfyfarm.cli import COMMANDS, main


def test_help_lists_every_command_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """`comfyfarm --help` names every subcommand with its one-line description."""
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    for name, text in COMMANDS.items():
        assert f"{name}" in out and text in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """`comfyfarm --version` prints the installed version."""
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"comfyfarm {__version__}"


def test_unknown_command_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown subcommand exits non-zero and says so."""
    with pytest.raises(SystemExit) as stop:
        main(["frobnicate"])
    assert stop.value.code == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_run_json_downloads_every_output(sim, tmp_path: Path, capsys) -> None:
    """`run --json` prints prompt_id, status and each output with a path; its BLAKE3 matches."""
    code = main(
        [
            "run",
            "sd15_text2image",
            "--comfy-url",
            sim.url,
            "--out",
            str(tmp_path),
            "--param",
            "prompt=a cat",
            "--param",
            "seed=7",
            "--json",
        ]
    )
    assert code == 0
    (line,) = capsys.readouterr().out.strip().splitlines()
    result = json.loads(line)
    assert result["status"] == "succeeded"
    assert result["params"] == {"prompt": "a cat", "seed": 7}
    (output,) = result["outputs"]
    assert output["node_id"] == "9" and output["kind"] == "images"
    data = Path(output["path"]).read_bytes()
    assert Path(output["path"]).is_relative_to(tmp_path)
    assert "blake3:" + blake3.blake3(data).hexdigest() == output["hash"]
    assert len(data) == output["bytes"] and data.startswith(b"\x89PNG")


def test_run_sweep_runs_one_job_per_value(sim, tmp_path: Path, capsys) -> None:
    """`run --sweep seed=1..3` runs three jobs, each with its own parameter record."""
    code = main(
        [
            "run",
            "empty_invert",
            "--comfy-url",
            sim.url,
            "--out",
            str(tmp_path),
            "--sweep",
            "width=64,96,128",
            "--json",
        ]
    )
    assert code == 0
    results = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [r["params"]["width"] for r in results] == [64, 96, 128]
    assert all(r["status"] == "succeeded" for r in results)


def test_run_refuses_a_bad_value_before_submitting(sim, tmp_path: Path, capsys) -> None:
    """An out-of-range override exits 2 naming node and input; nothing reaches ComfyUI."""
    code = main(
        [
            "run",
            "sd15_text2image",
            "--comfy-url",
            sim.url,
            "--out",
            str(tmp_path),
            "--set",
            "KSampler.steps=50000",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "node 3" in err and "steps" in err and "10000" in err
    stats = json.loads(__import__("requests").get(f"{sim.url}/_sim/stats", timeout=5).text)
    assert stats["prompts_accepted"] == 0


def test_run_reports_an_execution_error_with_node(start_sim, tmp_path: Path, capsys) -> None:
    """A node that raises on ComfyUI fails the job with node id, type and message; exit 1."""
    sim = start_sim(
        "--step-ms",
        "1",
        "--load-ms",
        "0",
        "--fault",
        "node_error:class_type=KSampler,message=CUDA out of memory",
    )
    code = main(
        ["run", "sd15_text2image", "--comfy-url", sim.url, "--out", str(tmp_path), "--json"]
    )
    assert code == 1
    result = json.loads(capsys.readouterr().out.strip())
    assert result["status"] == "failed"
    assert result["error"]["node_id"] == "3"
    assert result["error"]["node_type"] == "KSampler"
    assert "CUDA out of memory" in json.dumps(result["error"])


def test_run_with_unreachable_comfyui_exits_3(tmp_path: Path, capsys) -> None:
    """No ComfyUI at the URL: a clear error and exit 3, no traceback."""
    from comfyfarm.services import free_port

    code = main(
        [
            "run",
            "sd15_text2image",
            "--comfy-url",
            f"http://127.0.0.1:{free_port()}",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 3
    assert "not reachable" in capsys.readouterr().err
