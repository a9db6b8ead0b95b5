"""Everything a simulator instance is started with (built from CLI flags by ``simulator.cli``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# GET /models on ComfyUI 0.3.64, in its order.
MODEL_FOLDERS = (
    "checkpoints",
    "configs",
    "loras",
    "vae",
    "text_encoders",
    "diffusion_models",
    "clip_vision",
    "style_models",
    "embeddings",
    "diffusers",
    "vae_approx",
    "controlnet",
    "gligen",
    "upscale_models",
    "custom_nodes",
    "hypernetworks",
    "photomaker",
    "classifiers",
    "model_patches",
    "audio_encoders",
)

# Enough for the seed SD1.5 workflows to validate and run.
DEFAULT_MODELS: dict[str, tuple[str, ...]] = {
    "checkpoints": ("v1-5-pruned-emaonly-fp16.safetensors",),
    "vae": ("vae-ft-mse-840000-ema-pruned.safetensors",),
}


@dataclass
class Timing:
    """Simulated GPU time, in milliseconds.

    ``job_ms`` (when set) replaces the per-node model: every prompt that executes at least one
    node takes that long in total, spread over its executed nodes in proportion to their modelled
    cost. A fully cached prompt takes no time either way.
    """

    step_ms: float = 50.0
    load_ms: float = 300.0
    node_ms: float = 0.0
    job_ms: float | None = None
    class_ms: dict[str, float] = field(default_factory=dict)


RECORDED_VERSION = "0.3.64"  # the ComfyUI the protocol traces were recorded from


def version_tuple(version: str) -> tuple[int, ...]:
    """``"0.3.64"`` -> ``(0, 3, 64)``; raises ValueError for anything else."""
    parts = version.strip().split(".")
    if not 1 <= len(parts) <= 4 or not all(part.isdigit() for part in parts):
        raise ValueError(f"ComfyUI version must look like 0.3.64, got {version!r}")
    return tuple(int(part) for part in parts)


def is_jobs_generation(version: str) -> bool:
    """Whether a ComfyUI version is newer than the recorded 0.3.64 (the ``/api/jobs`` one)."""
    return version_tuple(version) > version_tuple(RECORDED_VERSION)


@dataclass
class SimConfig:
    """One simulator's settings.

    ``comfy_version`` picks the generation: 0.3.64 (recorded) or newer, which also serves the job
    API, refuses non-canonical prompt ids and lists every GPU in ``/system_stats`` (``gpus``).
    """

    host: str = "127.0.0.1"
    port: int = 8188
    root: Path | None = None
    models: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_MODELS))
    models_dir: Path | None = None  # listed like ComfyUI's models/ (files added later appear too)
    timing: Timing = field(default_factory=Timing)
    jobs_api: bool = False
    comfy_version: str = RECORDED_VERSION
    gpus: int = 1
    previews: bool = False
    faults: dict[str, dict[str, Any]] = field(default_factory=dict)
    fault_rate: float = 0.0
    fault_kinds: tuple[str, ...] = ()
    fault_seed: int | None = None
    access_log: bool = False
