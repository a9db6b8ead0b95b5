"""The producer side stays light: no worker, WebSocket or aiohttp code on a producer machine."""

from __future__ import annotations

import subprocess
import sys

import comfyfarm.producer

HEAVY = ("comfyfarm.worker", "comfyfarm.comfy", "comfyfarm.simulator", "websocket", "aiohttp")


def test_producer_imports_no_worker_or_websocket_code() -> None:
    """Importing producer (and using its API surface) loads none of worker, websocket, aiohttp."""
    code = (
        "import sys, comfyfarm.producer; "
        "from comfyfarm.producer import Farm, Job; from comfyfarm.tasks.settings import Settings; "
        "Farm(Settings()); "
        f"print(sorted({{m for m in sys.modules if m.startswith({HEAVY!r})}}))"
    )
    done = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_public_names() -> None:
    """The package exports exactly its documented API."""
    assert sorted(comfyfarm.producer.__all__) == sorted(
        ["CancelOutcome", "Farm", "FarmStatus", "Job", "JobIdInUse", "JobTimeout", "ProducerError",
         "QueueDepth", "RunningJob", "SubmitError", "UnknownJob", "WaitTimeout", "WorkerStatus",
         "build_spec"]
    )  # fmt: skip
