"""``comfyfarm gateway --processes N``: N gateway processes behind one port, supervised, whose
``/metrics`` each serve the sum of all of them.

Requests are pinned to one process by holding one HTTP connection per process
(``GET /api/v2/health`` says which process answers a connection, ``X-Comfyfarm-Process``).
"""

from __future__ import annotations

import http.client
import json
import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from farm_kit import wait_until
from prometheus_client.parser import text_string_to_metric_families
from tenants import TOKENS
from workflows_kit import invert, text2image

from comfyfarm.gateway.app import PROCESS_HEADER
from comfyfarm.gateway.settings import GatewaySettings
from comfyfarm.services import GatewayProcess
from comfyfarm.tasks.errors import SettingsError

AUTH = {"Authorization": f"Bearer {TOKENS['acme']}", "Content-Type": "application/json"}
MAX_CONNECTIONS = 64  # the kernel spreads connections by hash: 64 on one process is ~2**-63
ACCEPTED = ("comfyfarm_gateway_submits_total", (("outcome", "accepted"),))
OPEN_STREAMS = ("comfyfarm_gateway_open_streams", ())
SCRAPES = 8


@pytest.fixture
def pinned() -> Iterator[Any]:
    """``pinned(gateway, n)``: one open connection to each of n gateway processes, by process
    index (closed after the test)."""
    opened: list[dict[str, http.client.HTTPConnection]] = []

    def connect(gateway: GatewayProcess, count: int) -> dict[str, http.client.HTTPConnection]:
        opened.append(connections_by_process(gateway, count))
        return opened[-1]

    yield connect
    for conns in opened:
        for conn in conns.values():
            conn.close()


def connections_by_process(
    gateway: GatewayProcess, count: int
) -> dict[str, http.client.HTTPConnection]:
    """One open connection to each of ``count`` gateway processes, by process index."""
    parts = urlsplit(gateway.url)
    found: dict[str, http.client.HTTPConnection] = {}
    for _ in range(MAX_CONNECTIONS):
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
        conn.request("GET", "/api/v2/health")
        response = conn.getresponse()
        response.read()
        assert response.status == 200
        index = response.headers[PROCESS_HEADER]
        if index in found:
            conn.close()
        else:
            found[index] = conn
        if len(found) == count:
            return found
    for conn in found.values():
        conn.close()
    raise AssertionError(f"only processes {sorted(found)} answered {MAX_CONNECTIONS} connections")


def call(conn: http.client.HTTPConnection, method: str, path: str, body: Any = None) -> Any:
    conn.request(method, path, body=None if body is None else json.dumps(body), headers=AUTH)
    response = conn.getresponse()
    data = response.read()
    assert response.status < 300, (response.status, data)
    return json.loads(data)


def scrape(conn: http.client.HTTPConnection | None, gateway: GatewayProcess) -> dict[Any, float]:
    """One ``GET /metrics`` (on ``conn``, else on a new connection): (name, labels) → value."""
    parts = urlsplit(gateway.url)
    own = conn or http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        own.request("GET", "/metrics", headers=AUTH)
        response = own.getresponse()
        text = response.read().decode()
    finally:
        if conn is None:
            own.close()
    assert response.status == 200, text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def open_stream(conn: http.client.HTTPConnection, job_id: str) -> http.client.HTTPResponse:
    """A job's event stream on ``conn`` (its headers read: the gateway counts it already)."""
    conn.request("GET", f"/api/v2/jobs/{job_id}/events", headers=AUTH)
    stream = conn.getresponse()
    assert stream.status == 200
    return stream


def multiproc_dir(pid: int) -> Path:
    """The ``PROMETHEUS_MULTIPROC_DIR`` in process ``pid``'s environment."""
    entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    found = [e.split(b"=", 1)[1] for e in entries if e.startswith(b"PROMETHEUS_MULTIPROC_DIR=")]
    assert len(found) == 1, f"process {pid} has no PROMETHEUS_MULTIPROC_DIR"
    return Path(found[0].decode())


def sse_frame(block: str) -> tuple[str, Any]:
    """``event: X\ndata: {...}`` → (X, the decoded data)."""
    fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
    return fields["event"], json.loads(fields["data"])


def processes_under(pid: int) -> list[int]:
    """The pids of the children of ``pid`` (Linux /proc)."""
    children = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
            children.append(int(entry.name))
    return children


@contextmanager
def exit_watch(pids: list[int]) -> Iterator[list[int]]:
    """pidfds of ``pids``: ``select`` on them waits for those processes to end."""
    fds = [os.pidfd_open(pid) for pid in pids]
    try:
        yield fds
    finally:
        for fd in fds:
            os.close(fd)


def wait_all_exited(fds: list[int], timeout: float) -> bool:
    pending = list(fds)
    while pending:
        ready, _, _ = select.select(pending, [], [], timeout)
        if not ready:
            return False
        pending = [fd for fd in pending if fd not in ready]
    return True


@pytest.fixture
def gateway2(start_gateway) -> GatewayProcess:
    gateway: GatewayProcess = start_gateway(COMFYFARM_GATEWAY_PROCESSES="2")
    return gateway


def test_a_job_submitted_through_one_process_is_read_and_canceled_through_another(gateway2, pinned):
    """Both processes serve the one port; a job posted to process 1 is read and canceled
    through process 2, and process 1 sees the cancel (all state is in Redis)."""
    conns = pinned(gateway2, 2)

    job = call(conns["1"], "POST", "/api/v2/jobs", {"workflow": invert()})  # no worker: queued
    seen = call(conns["2"], "GET", f"/api/v2/jobs/{job['id']}")
    canceled = call(conns["2"], "POST", f"/api/v2/jobs/{job['id']}/cancel")
    after = call(conns["1"], "GET", f"/api/v2/jobs/{job['id']}")

    assert (job["status"], seen["status"]) == ("queued", "queued")
    assert canceled["status"] == after["status"] == "canceled"
    assert [j["id"] for j in call(conns["2"], "GET", "/api/v2/jobs")["jobs"]] == [job["id"]]


def test_events_stream_from_another_process_than_the_submit(gateway2, pinned, start_sim, workers):
    """An SSE stream opened on process 2 follows a job submitted through process 1 to its
    outputs and terminal status, then ends."""
    workers.start(start_sim("--step-ms", "20", "--load-ms", "0"))
    conns = pinned(gateway2, 2)

    job = call(conns["1"], "POST", "/api/v2/jobs", {"workflow": text2image(steps=10)})
    conns["2"].request("GET", f"/api/v2/jobs/{job['id']}/events", headers=AUTH)
    stream = conns["2"].getresponse()
    text = stream.read().decode()  # to EOF: the stream ends by itself

    frames = [sse_frame(block) for block in text.split("\n\n") if block.strip()]
    events = [event for event, _ in frames]
    assert stream.status == 200
    assert "output" in events and events.index("output") < len(events) - 1
    assert frames[-1] == ("status", {"status": "succeeded", "queue_position": None})


def test_a_process_that_dies_is_started_again(gateway2, pinned):
    """A killed gateway process is replaced under the same index; the port keeps serving."""
    assert gateway2.proc is not None
    before = processes_under(gateway2.proc.pid)
    mark = gateway2.proc.lines_printed

    os.kill(before[0], signal.SIGKILL)
    line = gateway2.proc.wait_for_line(lambda text: "started again" in text, 60, after=mark)

    after = processes_under(gateway2.proc.pid)
    assert line is not None, "".join(gateway2.proc.output[-20:])
    assert len(before) == len(after) == 2 and before[0] not in after
    assert sorted(pinned(gateway2, 2)) == ["1", "2"]


def test_sigterm_stops_every_process(gateway2):
    """SIGTERM to the supervisor stops its processes before it exits 0: none is left."""
    assert gateway2.proc is not None and gateway2.proc.process is not None
    children = processes_under(gateway2.proc.pid)
    assert len(children) == 2

    with exit_watch(children) as fds:
        gateway2.proc.signal(signal.SIGTERM)
        code = gateway2.proc.process.wait(30)
        assert wait_all_exited(fds, 0)  # already gone when the supervisor returned

    assert code == 0


def test_processes_die_with_a_killed_supervisor(gateway2):
    """Even SIGKILL of the supervisor leaves no orphan: the kernel stops its processes."""
    assert gateway2.proc is not None
    children = processes_under(gateway2.proc.pid)

    with exit_watch(children) as fds:
        gateway2.proc.kill()
        assert wait_all_exited(fds, 30)


def test_processes_setting_is_checked() -> None:
    """COMFYFARM_GATEWAY_PROCESSES must be 1-64; the error names the variable."""
    assert GatewaySettings.from_env({"COMFYFARM_GATEWAY_PROCESSES": "3"}).processes == 3
    with pytest.raises(SettingsError, match="COMFYFARM_GATEWAY_PROCESSES"):
        GatewaySettings.from_env({"COMFYFARM_GATEWAY_PROCESSES": "0"})


def test_a_taken_port_is_a_one_line_error() -> None:
    """--processes on a port another program listens on: exit 1, one line naming it."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("COMFYFARM_")}
        done = subprocess.run(
            [sys.executable, "-m", "comfyfarm", "gateway", "--processes", "2", "--port", str(port)],
            capture_output=True, text=True, timeout=60, env=env, check=False,
        )  # fmt: skip

    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: cannot bind 127.0.0.1:{port}: Address already in use"
    ]


def test_every_scrape_counts_the_submits_of_every_process(gateway2, pinned):
    """Jobs submitted through both processes: each process's /metrics, and every scrape on a
    new connection, shows the one total of both."""
    conns = pinned(gateway2, 2)
    before = scrape(conns["1"], gateway2)[ACCEPTED]

    for _ in range(3):
        call(conns["1"], "POST", "/api/v2/jobs", {"workflow": invert()})
    for _ in range(2):
        call(conns["2"], "POST", "/api/v2/jobs", {"workflow": invert()})

    by_process = [scrape(conns[index], gateway2)[ACCEPTED] for index in ("1", "2")]
    fresh = [scrape(None, gateway2)[ACCEPTED] for _ in range(SCRAPES)]
    assert before == 0
    assert by_process == [5, 5]
    assert fresh == [5] * SCRAPES


def test_open_streams_sum_over_the_processes(gateway2, pinned):
    """A stream open on each process counts 2 in either process's scrape; one ended, 1."""
    calls, streams = pinned(gateway2, 2), pinned(gateway2, 2)
    jobs = [call(calls["1"], "POST", "/api/v2/jobs", {"workflow": invert()}) for _ in range(2)]

    held = [open_stream(streams[index], job["id"]) for index, job in zip("12", jobs, strict=True)]
    both = [scrape(calls[index], gateway2)[OPEN_STREAMS] for index in ("1", "2")]
    call(calls["2"], "POST", f"/api/v2/jobs/{jobs[0]['id']}/cancel")
    held[0].read()  # to EOF: the canceled job's stream ends

    assert both == [2, 2]
    wait_until(lambda: scrape(calls["2"], gateway2)[OPEN_STREAMS] == 1, what="one stream left")
    assert scrape(calls["1"], gateway2)[OPEN_STREAMS] == 1


def test_a_killed_process_keeps_its_counts_and_drops_its_streams(gateway2, pinned):
    """A process killed and replaced: the submits it counted stay in the total (its files are
    kept), so nothing goes backwards; the streams it held leave the gauge."""
    assert gateway2.proc is not None
    calls, streams = pinned(gateway2, 2), pinned(gateway2, 2)
    jobs = [call(calls[index], "POST", "/api/v2/jobs", {"workflow": invert()}) for index in "112"]
    for index, job in zip("12", jobs[:2], strict=True):
        open_stream(streams[index], job["id"])
    counted = scrape(calls["1"], gateway2)
    assert (counted[ACCEPTED], counted[OPEN_STREAMS]) == (3, 2)
    before = processes_under(gateway2.proc.pid)
    mark = gateway2.proc.lines_printed

    os.kill(before[0], signal.SIGKILL)
    line = gateway2.proc.wait_for_line(lambda text: "started again" in text, 60, after=mark)
    assert line is not None, "".join(gateway2.proc.output[-20:])
    for conn in calls.values():
        conn.close()  # the survivor's stream stays open: it must still count
    after = pinned(gateway2, 2)
    call(after["2"], "POST", "/api/v2/jobs", {"workflow": invert()})

    totals = [scrape(after[index], gateway2) for index in ("1", "2")]
    assert [t[ACCEPTED] for t in totals] == [4, 4]
    assert [t[OPEN_STREAMS] for t in totals] == [1, 1]


def test_the_shared_metrics_directory_is_private_and_removed_at_exit(gateway2):
    """The children share one PROMETHEUS_MULTIPROC_DIR, mode 0700, gone once the supervisor
    has stopped."""
    assert gateway2.proc is not None and gateway2.proc.process is not None
    children = processes_under(gateway2.proc.pid)
    directories = {multiproc_dir(pid) for pid in children}
    assert len(directories) == 1
    directory = directories.pop()
    mode = directory.stat().st_mode & 0o777

    gateway2.proc.signal(signal.SIGTERM)
    assert gateway2.proc.process.wait(30) == 0

    assert mode == 0o700
    assert not directory.exists()


def test_a_killed_supervisors_metrics_directory_is_removed_by_the_next(gateway2, start_gateway):
    """SIGKILL leaves the supervisor no time to remove its metrics directory: the next
    ``--processes`` gateway removes it (its owner lock is free) when it starts."""
    assert gateway2.proc is not None
    children = processes_under(gateway2.proc.pid)
    directory = multiproc_dir(children[0])
    with exit_watch(children) as fds:
        gateway2.proc.kill()
        assert wait_all_exited(fds, 30)
    left_over = directory.is_dir()

    start_gateway(COMFYFARM_GATEWAY_PROCESSES="2")

    assert left_over and not directory.exists()
