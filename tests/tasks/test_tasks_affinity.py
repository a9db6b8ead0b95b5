"""Checkpoints of a prompt, model queue names and the affinity settings."""

from __future__ import annotations

import pytest

from comfyfarm.tasks.affinity import affinity_queue, checkpoints
from comfyfarm.tasks.errors import QueueNameError
from comfyfarm.tasks.routing import MODEL_QUEUE_PREFIX, check_queue, model_queue
from comfyfarm.tasks.settings import Settings, SettingsError


def test_checkpoints_are_the_string_ckpt_names_in_node_order() -> None:
    """Links, URLs and repeats are not checkpoint names; node ids sort numerically."""
    prompt = {
        "10": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "b.safetensors"}},
        "9": {"class_type": "CheckpointLoader", "inputs": {"ckpt_name": "a.safetensors"}},
        "11": {"class_type": "X", "inputs": {"ckpt_name": ["9", 0]}},
        "12": {"class_type": "Y", "inputs": {"ckpt_name": "https://h/x.safetensors"}},
        "13": {"class_type": "Z", "inputs": {"ckpt_name": "a.safetensors"}},
    }
    assert checkpoints(prompt) == ["a.safetensors", "b.safetensors"]
    assert affinity_queue(prompt) == model_queue("a.safetensors")
    assert affinity_queue({"1": {"class_type": "EmptyLatentImage", "inputs": {}}}) is None


def test_model_queues_are_distinct_readable_and_accepted() -> None:
    """Names differing only in case get different queues; check_queue accepts them only."""
    upper, lower = (
        model_queue("SDXL/Base 1.0.safetensors"),
        model_queue("sdxl/base 1.0.safetensors"),
    )
    assert upper != lower
    assert upper.startswith(MODEL_QUEUE_PREFIX + "sdxl-base-1.0.safetensors-")
    assert check_queue(upper) == upper
    with pytest.raises(QueueNameError):
        check_queue(MODEL_QUEUE_PREFIX + "made-up")
    with pytest.raises(QueueNameError):
        model_queue("")


def test_affinity_settings_come_from_the_environment() -> None:
    """COMFYFARM_AFFINITY takes yes/no words; a bad one names the variable."""
    settings = Settings.from_env({"COMFYFARM_AFFINITY": "yes", "COMFYFARM_AFFINITY_WAIT": "5"})
    assert settings.affinity is True and settings.affinity_wait == 5.0
    assert Settings.from_env({}).affinity is False
    with pytest.raises(SettingsError, match="COMFYFARM_AFFINITY"):
        Settings.from_env({"COMFYFARM_AFFINITY": "maybe"})
