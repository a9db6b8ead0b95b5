"""GatewaySupervisor: ``comfyfarm gateway --processes N`` — N gateway processes on one port.

One gateway process is one event loop on one core. The gateway keeps no state of its own (jobs,
idempotency keys and queue depths live in Redis), so more processes are simply more gateways:
each child is an ordinary ``comfyfarm gateway`` that binds the same address with
``SO_REUSEPORT``, and the kernel spreads new connections across them. Each child keeps its own
Redis pool and its ONE pub/sub subscription (``gateway.events``): N processes, N subscriptions.

The parent serves nothing; it supervises:

- it binds the address first (``SO_REUSEPORT``, never listening), which resolves port 0 and holds
  the port while a child restarts;
- it prints the ready line once every child has said it accepts connections;
- a child that exits is started again (after a pause that grows while it keeps failing fast);
- it gives the children one private metrics directory (``PROMETHEUS_MULTIPROC_DIR``, new and
  0700; removed when it stops), so each child's ``/metrics`` serves the sum of all of them; when a
  child exits its live gauges are dropped from that sum (``multiprocess_metrics.mark_dead``);
- SIGTERM or SIGINT stops every child (SIGTERM, then SIGKILL past ``STOP_TIMEOUT``) before the
  parent exits. Children ask the kernel to SIGTERM them when the parent dies
  (``PR_SET_PDEATHSIG``, Linux; elsewhere they watch their parent's pid): no orphans, even when
  the parent is killed outright.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from comfyfarm.tasks import multiprocess_metrics

READY_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
FAST_EXIT_SECONDS = 10.0  # a child that dies sooner than this after starting "fails fast"
MAX_RESTART_PAUSE = 30.0
READY_MESSAGE = b"ready\n"


class SupervisorError(Exception):
    """Raised when the gateway processes cannot be started (the port is taken, a child fails
    before it is ready)."""


@dataclass
class _Child:
    index: int
    process: subprocess.Popen[bytes]
    started_at: float
    ready: bool = True
    fast_failures: int = 0


@dataclass
class GatewaySupervisor:
    """``argv_for(index, ready_fd)`` builds a child's command line (``comfyfarm.commands.
    gateway`` passes its own options through, plus the hidden child options)."""

    host: str
    port: int
    processes: int
    child_argv: Sequence[str]
    env: dict[str, str] | None = None
    _children: dict[int, _Child] = field(default_factory=dict, init=False)
    _reserved: socket.socket | None = field(default=None, init=False)
    _wake: tuple[int, int] | None = field(default=None, init=False)  # self-pipe of signals
    _stopping: bool = field(default=False, init=False)
    #: The children's shared ``PROMETHEUS_MULTIPROC_DIR`` while they run.
    metrics_dir: str | None = field(default=None, init=False)

    def bind(self) -> int:
        """Hold the address with SO_REUSEPORT (not listening: it takes no connections) and
        return the port (the real one when ``port`` is 0)."""
        if not hasattr(socket, "SO_REUSEPORT"):
            raise SupervisorError("--processes needs SO_REUSEPORT, which this system lacks")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise SupervisorError(f"cannot bind {self.host}:{self.port}: {exc.strerror}") from None
        self._reserved = sock
        self.port = sock.getsockname()[1]
        return self.port

    def start(self) -> None:
        """Start every child and wait until each accepts connections."""
        # Signals only write a byte to a pipe the loop selects on (nothing else is safe to do
        # in a handler); SIGCHLD wakes the loop when a child exits.
        self._wake = os.pipe()
        for fd in self._wake:
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(self._wake[1], warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_stop_signal)
        self.metrics_dir = multiprocess_metrics.create_multiprocess_dir()
        base = os.environ if self.env is None else self.env
        self.env = {**base, multiprocess_metrics.MULTIPROC_ENV: self.metrics_dir}
        for index in range(1, self.processes + 1):
            child = self._spawn(index)
            self._children[index] = child
            if self._stopping:  # SIGTERM/SIGINT while starting: run() returns at once
                self.stop()
                return
            if not child.ready:
                self.stop()
                raise SupervisorError(
                    f"gateway process {index} did not become ready (exit code "
                    f"{child.process.returncode})"
                )

    def run(self) -> None:
        """Until SIGTERM/SIGINT: restart children that exit. Then stop them all."""
        try:
            while not self._stopping:
                self._sleep(1.0)
                if not self._stopping:
                    self._restart_exited()
        finally:
            self.stop()

    @property
    def stopping(self) -> bool:
        """SIGTERM/SIGINT arrived (or ``stop`` ran)."""
        return self._stopping

    def pids(self) -> list[int]:
        return [child.process.pid for child in self._children.values()]

    def stop(self) -> None:
        """SIGTERM every child, SIGKILL what is left after ``STOP_TIMEOUT``; release the port."""
        self._stopping = True
        children = list(self._children.values())
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for child in children:
            try:
                child.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
        self._children.clear()
        if self.metrics_dir is not None:
            multiprocess_metrics.remove_multiprocess_dir(self.metrics_dir)
            self.metrics_dir = None
        if self._reserved is not None:
            self._reserved.close()
            self._reserved = None

    def _on_stop_signal(self, signum: int, _frame: object) -> None:
        self._stopping = True

    def _sleep(self, seconds: float) -> None:
        """Wait up to ``seconds``; any signal (a child exited, stop) ends the wait early."""
        assert self._wake is not None
        with contextlib.suppress(InterruptedError):
            select.select([self._wake[0]], [], [], seconds)
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake[0], 512):
                pass

    def _restart_exited(self) -> None:
        for index, child in list(self._children.items()):
            code = child.process.poll()
            if code is None:
                continue
            if self.metrics_dir is not None:
                multiprocess_metrics.mark_dead(child.process.pid, self.metrics_dir)
            lived = time.monotonic() - child.started_at
            failures = child.fast_failures + 1 if lived < FAST_EXIT_SECONDS else 0
            pause = min(MAX_RESTART_PAUSE, 2.0 ** (failures - 1)) if failures else 0.0
            print(
                f"comfyfarm gateway: process {index} (pid {child.process.pid}) exited with "
                f"code {code}; starting it again in {pause:.0f} s",
                file=sys.stderr,
                flush=True,
            )
            deadline = time.monotonic() + pause
            while not self._stopping and time.monotonic() < deadline:
                self._sleep(deadline - time.monotonic())
            if self._stopping:
                return
            replacement = self._spawn(index)
            replacement.fast_failures = failures
            self._children[index] = replacement
            state = "started again" if replacement.ready else "failed to start again"
            print(f"comfyfarm gateway: process {index} {state} (pid {replacement.process.pid})",
                  file=sys.stderr, flush=True)  # fmt: skip

    def _spawn(self, index: int) -> _Child:
        """Start child ``index`` and wait until it is ready; one that is not is killed (its
        ``ready`` is False: the loop starts it again after a pause)."""
        read_fd, write_fd = os.pipe()
        try:
            argv = [*self.child_argv, "--port", str(self.port), "--process-index", str(index),
                    "--parent-pid", str(os.getpid()), "--ready-fd", str(write_fd)]  # fmt: skip
            process = subprocess.Popen(argv, env=self.env, pass_fds=(write_fd,),
                                       stdin=subprocess.DEVNULL)  # fmt: skip
        finally:
            os.close(write_fd)
        try:
            ready = self._wait_ready(read_fd, READY_TIMEOUT)
        finally:
            os.close(read_fd)
        if not ready and process.poll() is None:
            process.kill()
            process.wait()
        return _Child(index, process, time.monotonic(), ready=ready)

    def _wait_ready(self, read_fd: int, timeout: float) -> bool:
        """True once the child wrote its ready message; False at EOF (it exited), at timeout, or
        when SIGTERM/SIGINT asks the supervisor to stop."""
        stop = self._wake[0] if self._wake is not None else None
        deadline = time.monotonic() + timeout
        received = b""
        watched = [read_fd] if stop is None else [read_fd, stop]
        while len(received) < len(READY_MESSAGE):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            with contextlib.suppress(InterruptedError):
                readable, _, _ = select.select(watched, [], [], left)
                if stop in readable and read_fd not in readable:
                    with contextlib.suppress(BlockingIOError):
                        os.read(stop, 512)
                    if self._stopping:
                        return False
                    continue
                if not readable:
                    continue
                chunk = os.read(read_fd, 64)
                if not chunk:
                    return False
                received += chunk
        return received.startswith(READY_MESSAGE)


def tell_ready(ready_fd: int) -> None:
    """In a child: tell the supervisor this process accepts connections."""
    try:
        os.write(ready_fd, READY_MESSAGE)
    finally:
        os.close(ready_fd)


def die_with_parent(parent_pid: int) -> bool:
    """In a child: have the kernel SIGTERM this process when its parent exits (Linux). False
    when that is not available (the caller watches the parent itself). Exits at once if the
    parent is already gone."""
    armed = False
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        armed = int(libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)) == 0
    if os.getppid() != parent_pid:  # the parent died before the request above took effect
        raise SystemExit(0)
    return armed
