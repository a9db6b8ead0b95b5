"""Queue naming and priorities."""

from __future__ import annotations

import pytest

from comfyfarm.tasks.errors import QueueNameError
from comfyfarm.tasks.routing import (
    SHARED_QUEUE,
    capability_queue,
    celery_priority,
    check_queue,
    queue_keys,
    worker_queue,
)


def test_queue_names() -> None:
    """Shared, per-worker and per-capability queues follow the documented names."""
    assert SHARED_QUEUE == "comfyfarm"
    assert worker_queue("gpu0") == "comfyfarm.worker.gpu0"
    assert worker_queue("gpu0@host-1") == "comfyfarm.worker.gpu0@host-1"
    assert capability_queue("sdxl") == "comfyfarm.cap.sdxl"


@pytest.mark.parametrize("bad", ["", "gpu 0", "-x", "a/b", "x" * 101, "é"])
def test_bad_worker_names_are_refused(bad: str) -> None:
    """Names that would make odd queue names raise QueueNameError."""
    with pytest.raises(QueueNameError):
        worker_queue(bad)


@pytest.mark.parametrize("bad", ["", "SDXL", "a b", "x" * 65, "flux*"])
def test_bad_capabilities_are_refused(bad: str) -> None:
    """Capabilities are lowercase words."""
    with pytest.raises(QueueNameError):
        capability_queue(bad)


def test_check_queue_accepts_only_farm_queues() -> None:
    """A typo'd queue nobody consumes is refused before anything is sent."""
    assert check_queue("comfyfarm.cap.flux") == "comfyfarm.cap.flux"
    with pytest.raises(QueueNameError):
        check_queue("celery")
    with pytest.raises(QueueNameError):
        check_queue("comfyfarm.worker.")


def test_priorities_map_to_redis_order() -> None:
    """Farm priority 9 (most urgent) is Redis priority 0, which kombu pops first."""
    assert celery_priority(9) == 0
    assert celery_priority(0) == 9
    assert celery_priority(None) == 4
    for bad in (-1, 10, True, 2.5):
        with pytest.raises(ValueError):
            celery_priority(bad)  # type: ignore[arg-type]


def test_queue_keys_follow_kombu_layout() -> None:
    """Priority 0 of kombu is the bare queue key; others get the separator and the step."""
    keys = queue_keys("p:", "comfyfarm")
    assert keys[9] == "p:comfyfarm"
    assert keys[0] == "p:comfyfarm\x06\x169"
    assert len(keys) == 10
