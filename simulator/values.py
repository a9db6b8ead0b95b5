"""The values that flow along links between simulated nodes.

No tensors: an image batch is a list of frame descriptions (size and two colours), a latent is a
size plus a fingerprint. ``str()`` of each value is what ``execution_error.current_inputs`` shows,
standing in for ComfyUI's ``str(tensor)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from comfyfarm.simulator.images import RGB


@dataclass(frozen=True)
class Frame:
    """One picture of a batch: a vertical gradient."""

    width: int
    height: int
    top: RGB
    bottom: RGB


@dataclass(frozen=True)
class ImageBatch:
    """An IMAGE value (ComfyUI: a [batch, height, width, 3] tensor)."""

    frames: tuple[Frame, ...]

    def __str__(self) -> str:
        first = self.frames[0] if self.frames else Frame(0, 0, (0, 0, 0), (0, 0, 0))
        return f"tensor(shape=[{len(self.frames)}, {first.height}, {first.width}, 3])"


@dataclass(frozen=True)
class Latent:
    """A LATENT value: pixel size, batch size and a fingerprint that decides the decoded colours."""

    width: int
    height: int
    batch: int
    fingerprint: str
    seconds: float = 0.0  # audio latents (EmptyLatentAudio) carry a duration instead of a size

    def __str__(self) -> str:
        return (
            f"{{'samples': tensor(shape=[{self.batch}, 4, {self.height // 8}, {self.width // 8}])}}"
        )


@dataclass(frozen=True)
class Handle:
    """Any other typed value (MODEL, CLIP, VAE, CONDITIONING, MASK, AUDIO): a name and a label."""

    type_name: str
    label: str

    def __str__(self) -> str:
        return f"<{self.type_name} {self.label}>"
