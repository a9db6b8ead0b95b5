"""``comfyfarm flower``: Flower with the farm's settings, auth and metric buckets for long jobs.

What Flower shows comes from the task events the workers and producers send: each job under the
name ``comfyfarm.run_job`` with its workflow and parameters as args (the producer's ``argsrepr``,
never the prompt), its labels as kwargs, its state (``PROGRESS`` while ComfyUI runs it, from the
worker's ``task-progress`` events), worker and runtime. Flower keeps this in memory only: it knows
the jobs sent while it runs (its ``--persistent`` mode would store the state with pickle, which the
farm does not use).

Security: basic auth comes from ``COMFYFARM_FLOWER_BASIC_AUTH`` (``user:password``; never put on
a command line). Without it Flower binds to loopback only: binding any other address without auth
is refused, because Flower's API can run registered tasks and shut workers down. With auth
Flower's HTTP API is enabled; ``/metrics`` and ``/healthcheck`` stay unauthenticated (Flower's
design), so publish the port only where Prometheus may read it, and serve basic auth behind TLS
(a reverse proxy) beyond one machine. ``--read-only`` disables every action.

Prometheus ``/metrics`` uses runtime buckets that fit minutes-long GPU jobs (up to an hour).
"""

from __future__ import annotations

import argparse
import sys

from comfyfarm.tasks.binding import is_loopback

RUNTIME_BUCKETS = "1,5,10,30,60,120,300,600,1200,1800,3600,inf"
# The tasks page shows the job's parameters (args) and labels (kwargs); Flower's default hides them.
TASK_COLUMNS = "name,uuid,state,args,kwargs,received,started,runtime,worker"
OFFLINE_WORKER_PURGE_SECONDS = 300


class FlowerRefused(Exception):
    """Raised when Flower would serve its UI and API unauthenticated beyond this machine."""

    def __init__(self, *, address: str) -> None:
        self.address = address
        super().__init__(
            f"refusing to serve Flower on {address!r} without auth: "
            "set COMFYFARM_FLOWER_BASIC_AUTH=user:password, or bind 127.0.0.1"
        )


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=5555)
    parser.add_argument(
        "--address",
        default="127.0.0.1",
        help="address to bind; anything but loopback needs COMFYFARM_FLOWER_BASIC_AUTH "
        "(in a container: 0.0.0.0, and publish the port on 127.0.0.1 only)",
    )
    parser.add_argument("--url-prefix", default="", help="when served behind a proxy path")
    parser.add_argument(
        "--read-only",
        action="store_true",
        help="no actions (revoke, shutdown, pool changes, task apply): a viewer's Flower",
    )


def flower_argv(args: argparse.Namespace, basic_auth: str | None) -> list[str]:
    """The ``celery flower`` arguments; raises FlowerRefused for an unauthenticated
    non-loopback bind."""
    if not basic_auth and not is_loopback(args.address):
        raise FlowerRefused(address=args.address)
    argv = [
        "flower",
        f"--port={args.port}",
        f"--address={args.address}",
        f"--task-runtime-metric-buckets={RUNTIME_BUCKETS}",
        f"--tasks-columns={TASK_COLUMNS}",
        f"--purge-offline-workers={OFFLINE_WORKER_PURGE_SECONDS}",
    ]
    if basic_auth:
        argv.append(f"--basic-auth={basic_auth}")
    if args.url_prefix:
        argv.append(f"--url-prefix={args.url_prefix}")
    if getattr(args, "read_only", False):
        argv.append("--read-only=true")
    return argv


def run(args: argparse.Namespace) -> int:
    import flower  # noqa: F401  (Celery only says "no such command" without it)

    from comfyfarm.tasks.app import make_app
    from comfyfarm.tasks.settings import Settings

    settings = Settings.from_env()
    try:
        argv = flower_argv(args, settings.flower_basic_auth)
    except FlowerRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    app = make_app(settings)
    # In-process: the password in ``argv`` never reaches this process's visible command line.
    app.start(argv)
    return 0
