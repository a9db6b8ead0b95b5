"""The interface between the executor and the simulated nodes.

A node is an async function ``run(ctx, **inputs) -> NodeResult``: its inputs arrive with links
resolved, ``ctx`` carries everything else (files, the GPU model, the progress hook).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from comfyfarm.simulator.files import StorageRoots
from comfyfarm.simulator.gpu import SimulatedGpu


class NodeFailure(Exception):
    """Raised by a node to fail the prompt with a given ComfyUI exception type (e.g. PIL's)."""

    def __init__(self, message: str, *, exception_type: str) -> None:
        super().__init__(message)
        self.exception_type = exception_type


Report = Callable[[int, int, "bytes | None"], Awaitable[None]]


@dataclass
class NodeContext:
    """What a node may use besides its inputs."""

    node_id: str
    prompt_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    roots: StorageRoots
    gpu: SimulatedGpu
    seconds: float  # simulated GPU time this node should take
    previews: bool  # send sampler preview frames (ComfyUI --preview-method)
    # survives between runs of the same node id and class (ComfyUI keeps node objects)
    state: dict[str, Any]
    report: Report  # progress hook: (value, max, preview PNG or None)


@dataclass(frozen=True)
class NodeResult:
    outputs: tuple[Any, ...] = ()
    ui: dict[str, Any] | None = None


NodeFunction = Callable[..., Awaitable[NodeResult]]


@dataclass(frozen=True)
class NodeImpl:
    run: NodeFunction
    paces_itself: bool = False  # spends ctx.seconds itself (else the executor sleeps first)
    always_changed: bool = False  # ComfyUI IS_CHANGED returning time.time(): never cached
