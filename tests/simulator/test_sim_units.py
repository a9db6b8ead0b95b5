"""Simulator parts without a server: execution order, faults table, files, images and the CLI."""

from __future__ import annotations

import argparse
import struct
import subprocess
import sys

import pytest
from sim_kit import REPO, seed_workflow, trace

from comfyfarm.services import SIM_READY_MARK
from comfyfarm.simulator import cli
from comfyfarm.simulator.config import DEFAULT_MODELS
from comfyfarm.simulator.faults import FaultError, FaultTable, parse_fault_spec
from comfyfarm.simulator.files import StorageRoots, UnsafeSavePath
from comfyfarm.simulator.graph import ExecutionList, node_signatures
from comfyfarm.simulator.images import encode_png, sniff_size
from comfyfarm.simulator.schema import NodeSchemas
from comfyfarm.simulator.validation import validate_node_input


def _order(prompt: dict, outputs: list[str], tmp_path) -> list[str]:
    schemas = NodeSchemas(DEFAULT_MODELS, StorageRoots(tmp_path))
    order = ExecutionList(prompt, schemas.is_output, lambda node_id: False)
    for node_id in outputs:
        order.add_node(node_id)
    ran = []
    while not order.is_empty():
        node_id = order.stage()
        ran.append(node_id)
        order.complete(node_id)
    return ran


def test_execution_order_follows_comfyui_heuristics(tmp_path):
    """Outputs first, then their feeders: SD1.5 runs VAELoader first and SaveImage last."""
    assert _order(seed_workflow(), ["9"], tmp_path) == ["10", "5", "4", "7", "6", "3", "8", "9"]
    assert _order(trace("07")["workflow"], ["2", "5"], tmp_path)[:3] == ["1", "2", "3"]


def test_signatures_ignore_node_ids_but_not_values():
    """Equal graphs under other ids share cache keys; an upstream change changes downstream keys."""
    base = {
        "1": {"class_type": "A", "inputs": {"x": 1}},
        "2": {"class_type": "B", "inputs": {"i": ["1", 0]}},
    }
    moved = {
        "7": {"class_type": "A", "inputs": {"x": 1}},
        "8": {"class_type": "B", "inputs": {"i": ["7", 0]}},
    }
    changed = {
        "1": {"class_type": "A", "inputs": {"x": 2}},
        "2": {"class_type": "B", "inputs": {"i": ["1", 0]}},
    }
    keys = node_signatures(base, lambda c, i: "")
    assert keys["2"] == node_signatures(moved, lambda c, i: "")["8"]
    assert keys["2"] != node_signatures(changed, lambda c, i: "")["2"]


def test_fault_triggers_nth_times_and_seeded_rate():
    """nth fires on one occurrence, times caps firing, and a seeded rate repeats exactly."""
    table = FaultTable()
    table.arm("crash", {"nth": 2})
    assert [table.check("crash") is not None for _ in range(3)] == [False, True, False]
    table.arm("view_500", {"times": 2})
    assert [table.check("view_500") is not None for _ in range(3)] == [True, True, False]
    runs = []
    for _ in range(2):
        seeded = FaultTable(seed=3)
        seeded.arm("drop_ws", {"rate": 0.5})
        runs.append([seeded.check("drop_ws") is not None for _ in range(20)])
    assert runs[0] == runs[1] and any(runs[0]) and not all(runs[0])


def test_fault_specs_parse_and_reject_unknown_keys():
    """CLI specs parse JSON values; unknown faults, keys and choices are refused."""
    assert parse_fault_spec("crash:after_ms=500,nth=2") == ("crash", {"after_ms": 500, "nth": 2})
    assert parse_fault_spec("node_error:class_type=KSampler") == (
        "node_error",
        {"class_type": "KSampler"},
    )
    with pytest.raises(FaultError):
        FaultTable().arm("meteor", {})
    with pytest.raises(FaultError):
        FaultTable().arm("garbage", {"mode": "poetry"})


def test_save_counters_continue_and_prefixes_stay_inside(tmp_path):
    """Counters continue from files on disk; a prefix leaving output/ is refused like ComfyUI."""
    roots = StorageRoots(tmp_path)
    (roots.output / "img_00007_.png").write_bytes(b"x")
    target = roots.next_save_path("img", roots.output)
    assert target.counter == 8
    roots.commit_save(target, 2)
    assert roots.next_save_path("img", roots.output).counter == 10
    with pytest.raises(UnsafeSavePath):
        roots.next_save_path("../escape", roots.output)


def test_png_encoding_and_size_sniffing():
    """Our PNGs carry their size and text chunks; JPEG and GIF sizes are read, text is refused."""
    png = encode_png(5, 3, (0, 0, 0), (255, 255, 255), text={"prompt": "{}"})
    assert sniff_size(png) == (5, 3) and b"tEXtprompt\x00{}" in png
    jpeg = b"\xff\xd8" + b"\xff\xc0" + struct.pack(">HBHH", 17, 8, 40, 30) + b"\x00" * 12
    assert sniff_size(jpeg) == (30, 40)
    assert sniff_size(b"GIF89a" + struct.pack("<HH", 7, 9)) == (7, 9)
    assert sniff_size(b"not an image") is None


def test_link_type_check():
    """Equal, wildcard and comma-separated types connect; others and lists do not."""
    assert validate_node_input("IMAGE", "IMAGE") and validate_node_input("STRING", "*")
    assert validate_node_input("INT,FLOAT", "FLOAT")
    assert not validate_node_input("MASK", "IMAGE") and not validate_node_input("STRING", ["a"])


def test_cli_flags_build_the_config():
    """Model, timing, fault and jobs flags end up in the config."""
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(
        [
            "--no-models",
            "--models",
            "checkpoints=a.safetensors,b.safetensors",
            "--job-ms",
            "250",
            "--class-ms",
            "ImageBlur=10",
            "--fault",
            "crash:nth=3",
            "--jobs-api",
            "--fault-kinds",
            "drop_ws",
        ]
    )
    config = cli.config_from_args(args)
    assert config.models == {"checkpoints": ("a.safetensors", "b.safetensors")}
    assert (config.timing.job_ms, config.timing.class_ms) == (250, {"ImageBlur": 10.0})
    assert (
        config.faults == {"crash": {"nth": 3}}
        and config.jobs_api
        and config.fault_kinds == ("drop_ws",)
    )
    assert cli.config_from_args(parser.parse_args([])).jobs_api is False


def test_bad_fault_flag_exits_with_usage_error():
    """An unknown fault on the command line stops the simulator with exit code 2."""
    run = subprocess.run(
        [sys.executable, "-P", "-m", "comfyfarm.simulator", "--port", "0", "--fault", "meteor"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
    )
    assert run.returncode == 2 and "meteor" in run.stderr


def test_comfyfarm_sim_command_serves(tmp_path):
    """`comfyfarm sim` starts the same server and prints the ready line."""
    import requests

    process = subprocess.Popen(
        [sys.executable, "-P", "-m", "comfyfarm", "sim", "--port", "0", "--root", str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith(SIM_READY_MARK)
        url = line.split(" on ", 1)[1].strip()
        assert requests.get(f"{url}/prompt", timeout=5).json() == {
            "exec_info": {"queue_remaining": 0}
        }
        assert (tmp_path / "output").is_dir() and (tmp_path / "input").is_dir()
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
