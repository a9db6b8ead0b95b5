"""Helpers for the farm tests: worker processes, waiting on conditions, simulator accounting,
a webhook receiver and a moto S3 server.

Workers are real ``python -m comfyfarm worker`` processes; readiness is Celery's own
``<name>@<host> ready.`` log line (stderr, merged into the process output).
"""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import unquote, urlparse

import blake3
import redis
import requests

from comfyfarm.services import ManagedProcess, SimulatorProcess, free_port

READY_LINE = re.compile(r"@\S+ ready\.\s*$")
DEFAULT_TIMEOUT = 20.0

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T], timeout: float = DEFAULT_TIMEOUT, what: str = "condition"
) -> T:
    """Poll ``condition`` until it returns something truthy (for states that send no event)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


@dataclass
class WorkerProcess:
    """One ``comfyfarm worker`` process bound to one simulator."""

    name: str
    sim: SimulatorProcess
    proc: ManagedProcess

    def log(self) -> str:
        return "".join(self.proc.output)

    def wait_for_log(self, text: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Until a line containing ``text`` has been printed (the last 200 lines are kept)."""
        wait_until(
            lambda: any(text in line for line in list(self.proc.output)),
            timeout,
            f"{self.name} to log {text!r}\n--- log tail ---\n{''.join(self.proc.output[-30:])}",
        )

    def terminate(self) -> None:
        """SIGTERM (warm shutdown) without waiting."""
        self.proc.signal(signal.SIGTERM)

    def reap(self, timeout: float = 15.0) -> None:
        """Wait for the process to end; kill its whole process group if it does not."""
        process = self.proc.process
        if process is None:
            return
        try:
            process.wait(timeout)
        except Exception:
            pass
        try:
            # The pool child shares the group (start_new_session); never leave it orphaned.
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        process.wait()


@dataclass
class WorkerFactory:
    """Starts workers for one test, all on the same farm (broker, key prefix, storage)."""

    broker_url: str
    key_prefix: str
    storage_url: str
    started: list[WorkerProcess] = field(default_factory=list)

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("COMFYFARM_")}
        env.update(
            COMFYFARM_BROKER_URL=self.broker_url,
            COMFYFARM_STORAGE_URL=self.storage_url,
            COMFYFARM_KEY_PREFIX=self.key_prefix,
            PYTHONUNBUFFERED="1",
        )
        env.update(extra or {})
        return env

    def start(
        self,
        sim: SimulatorProcess,
        name: str | None = None,
        *,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
        command: tuple[str, ...] = (sys.executable, "-P", "-m", "comfyfarm"),
        cwd: str | None = None,
    ) -> WorkerProcess:
        """``command`` runs the CLI; ``cwd``: the worker's directory."""
        name = name or f"w{len(self.started)}"
        argv = [*command, "worker", "--comfy-url", sim.url, "--name", name, *args]
        proc = ManagedProcess(
            argv,
            ready=lambda line: bool(READY_LINE.search(line)),
            name=f"worker {name}",
            env=self.env(env),
            cwd=cwd,
        )
        worker = WorkerProcess(name, sim, proc)
        self.started.append(worker)
        proc.start()
        return worker

    def start_many(
        self, sims: list[SimulatorProcess], *, env: dict[str, str] | None = None
    ) -> list[WorkerProcess]:
        """One worker per simulator, started concurrently (each start waits for its ready line)."""
        workers: list[WorkerProcess | None] = [None] * len(sims)
        errors: list[BaseException] = []

        def start(index: int) -> None:
            try:
                workers[index] = self.start(sims[index], f"w{index}", env=env)
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(i,)) for i in range(len(sims))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        return [worker for worker in workers if worker is not None]

    def stop_all(self, reaper: Reaper | None = None) -> None:
        """SIGTERM every worker; wait for them here, or let ``reaper`` wait in the background."""
        for worker in self.started:
            worker.terminate()
        if reaper is not None:
            reaper.reap_later(self.started)
        else:
            for worker in self.started:
                worker.reap()


class Reaper:
    """Waits for stopped workers in background threads, so a test does not pay for Celery's
    warm shutdown (~1.5 s of pool teardown); ``join`` at the end of the session."""

    def __init__(self) -> None:
        self._threads: list[threading.Thread] = []

    def reap_later(self, workers: list[WorkerProcess]) -> None:
        for worker in workers:
            thread = threading.Thread(target=worker.reap, daemon=True)
            thread.start()
            self._threads.append(thread)

    def join(self) -> None:
        for thread in self._threads:
            thread.join()


# -- the simulator's side ---------------------------------------------------------------------


def sim_stats(sim: SimulatorProcess) -> dict[str, Any]:
    response = requests.get(sim.url + "/_sim/stats", timeout=5)
    response.raise_for_status()
    stats: dict[str, Any] = response.json()
    return stats


def executions(sim: SimulatorProcess, prompt_id: str) -> int:
    """How many times the simulator executed ``prompt_id``."""
    return int(sim_stats(sim)["executions"].get(prompt_id, 0))


# -- files --------------------------------------------------------------------------------------


def blake3_of(data: bytes) -> str:
    """The output hash the farm records by default: ``blake3:<hex>``."""
    return "blake3:" + blake3.blake3(data).hexdigest()


def path_of(uri: str) -> Path:
    """The local path of a ``file://`` URI."""
    parts = urlparse(uri)
    assert parts.scheme == "file", uri
    return Path(unquote(parts.path))


def png_bytes(width: int = 8, height: int = 8) -> bytes:
    """A small valid RGB PNG (for input-file tests)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    row = b"\x00" + bytes([200, 100, 50]) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


# -- webhook receiver ---------------------------------------------------------------------------


@dataclass
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    body: bytes


class WebhookReceiver:
    """A local HTTP server (thread) that records POSTs; ``statuses`` scripts its answers."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.requests: list[ReceivedRequest] = []
        self.statuses = list(statuses or [])
        self.received = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                receiver.requests.append(
                    ReceivedRequest(self.path, {k: v for k, v in self.headers.items()}, body)
                )
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                receiver.received.set()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/hook"

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- S3 (moto server) ---------------------------------------------------------------------------

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def moto_server() -> Iterator[str]:
    """Start ``python -m moto.server`` on loopback; yields its endpoint URL."""
    port = free_port()
    server = ManagedProcess(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        ready=lambda line: "Running on" in line,
        name="moto server",
        env=dict(os.environ, **S3_ENV),
    ).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


# -- Redis commands ----------------------------------------------------------------------------


class CommandLog:
    """Every command Redis runs (MONITOR) that mentions ``needle``, recorded in a thread until
    the log is closed: everything Redis ran before that is in ``commands``."""

    def __init__(self, url: str, needle: str) -> None:
        self._url = url
        self._client = redis.Redis.from_url(url)
        self._needle = needle
        self._end = f"commandlog-end-{uuid.uuid4().hex}"
        self.commands: list[str] = []
        self._ready = threading.Event()
        self._synced = threading.Event()
        self._sync_marker = f"commandlog-sync-{uuid.uuid4().hex}"
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self._client.monitor() as monitor:
            self._ready.set()
            while True:
                command = monitor.next_command()["command"]
                if self._end in command:
                    return
                if self._sync_marker in command:
                    self._synced.set()
                elif self._needle in command:
                    self.commands.append(command)

    def sync(self) -> None:
        """Return once ``commands`` holds everything Redis ran before this call (MONITOR lines
        arrive a little later than the commands they show)."""
        self._synced.clear()
        with redis.Redis.from_url(self._url) as client:
            client.echo(self._sync_marker)
        assert self._synced.wait(10), "MONITOR did not catch up"

    def count(self, verb: str, mentioning: str) -> int:
        return sum(1 for c in self.commands if c.upper().startswith(verb + " ") and mentioning in c)

    def __enter__(self) -> CommandLog:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # A marker command: the monitor has seen everything before it when it sees the marker.
        with redis.Redis.from_url(self._url) as client:
            client.echo(self._end)
        self._thread.join(10)
