"""What a user causes gets one line and a documented exit status, never a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from comfyfarm import exits


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def comfyfarm(*args: str, broker_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-P", "-m", "comfyfarm", *args],
        env={"COMFYFARM_BROKER_URL": broker_url, "PATH": "/usr/bin"},
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip


@pytest.mark.parametrize(
    "command",
    [("status",), ("cancel", "2d97baf8-449c-4b3e-9388-27283e5cafb7"),
     ("result", "2d97baf8-449c-4b3e-9388-27283e5cafb7")],
)  # fmt: skip
def test_an_unreachable_broker_is_one_line_naming_it_without_the_password(
    command: tuple[str, ...],
) -> None:
    """A refusing broker: exit 3, one line naming the URL with the password hidden."""
    done = comfyfarm(*command, broker_url=f"redis://:s3cret@127.0.0.1:{closed_port()}/0")
    assert done.returncode == exits.ENVIRONMENT, done.stderr
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "cannot reach the broker at redis://:***@127.0.0.1:" in line
    assert "s3cret" not in done.stderr + done.stdout


def test_a_broker_url_of_the_wrong_scheme_is_a_bad_setting() -> None:
    """An http:// broker URL: exit 2 and one line naming the variable, the password hidden."""
    done = comfyfarm("status", broker_url="http://:s3cret@127.0.0.1:6379")
    assert done.returncode == exits.BAD_INPUT, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "COMFYFARM_BROKER_URL" in line and "scheme" in line
    assert "s3cret" not in done.stderr


def test_a_malformed_job_id_is_bad_input() -> None:
    """`result` of something that cannot be a job id says so and exits 2 (before the broker)."""
    done = comfyfarm("result", "not-a-job!", broker_url=f"redis://127.0.0.1:{closed_port()}/0")
    assert done.returncode == exits.BAD_INPUT, done.stderr
    assert "Traceback" not in done.stderr and "unknown job" in done.stderr


def test_an_unknown_missing_module_is_a_bug_and_keeps_its_traceback() -> None:
    """Only the extras' modules are explained; any other missing module is re-raised."""
    assert exits.explain(ModuleNotFoundError(name="nonexistent_module"), broker_url=None) is None
    status, message = exits.explain(ModuleNotFoundError(name="websocket"), broker_url=None) or (
        0,
        "",
    )
    assert status == exits.ENVIRONMENT and "comfyfarm[worker]" in message
