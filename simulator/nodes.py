"""What each simulated node class does when it executes, and the registry of node classes.

Loaders, conditioning, latents and image operations pass light values along (see
``simulator.values``); KSampler spends its time in steps and reports progress after each one,
which is where interrupts take effect. The file-writing output nodes live in
``comfyfarm.simulator.savers``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

from comfyfarm.simulator import images as img
from comfyfarm.simulator import savers
from comfyfarm.simulator.node_api import NodeContext, NodeFailure, NodeImpl, NodeResult
from comfyfarm.simulator.values import Frame, Handle, ImageBatch, Latent


def _digest(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def _frames(fingerprint: str, width: int, height: int, count: int) -> tuple[Frame, ...]:
    return tuple(
        Frame(width, height, img.colour_from(fingerprint, i, 0), img.colour_from(fingerprint, i, 1))
        for i in range(count)
    )


# --- loaders and conditioning -------------------------------------------------------------


async def checkpoint_loader(ctx: NodeContext, ckpt_name: str) -> NodeResult:
    ctx.gpu.load(ckpt_name)
    return NodeResult(
        (Handle("MODEL", ckpt_name), Handle("CLIP", ckpt_name), Handle("VAE", ckpt_name))
    )


async def vae_loader(ctx: NodeContext, vae_name: str) -> NodeResult:
    return NodeResult((Handle("VAE", vae_name),))


async def lora_loader(
    ctx: NodeContext,
    model: Handle,
    clip: Handle,
    lora_name: str,
    strength_model: float,
    strength_clip: float,
) -> NodeResult:
    suffix = f"+{lora_name}:{strength_model}:{strength_clip}"
    return NodeResult((Handle("MODEL", model.label + suffix), Handle("CLIP", clip.label + suffix)))


async def clip_text_encode(ctx: NodeContext, text: str, clip: Handle) -> NodeResult:
    return NodeResult((Handle("CONDITIONING", _digest(clip.label, text)),))


# --- latents and sampling -------------------------------------------------------------------


async def empty_latent_image(
    ctx: NodeContext, width: int, height: int, batch_size: int
) -> NodeResult:
    return NodeResult((Latent(width, height, batch_size, "empty"),))


async def ksampler(
    ctx: NodeContext,
    model: Handle,
    seed: int,
    steps: int,
    cfg: float,
    sampler_name: str,
    scheduler: str,
    positive: Handle,
    negative: Handle,
    latent_image: Latent,
    denoise: float,
) -> NodeResult:
    fingerprint = _digest(
        model.label,
        seed,
        steps,
        cfg,
        sampler_name,
        scheduler,
        positive.label,
        negative.label,
        latent_image.fingerprint,
        denoise,
    )
    per_step = ctx.seconds / max(steps, 1)
    for step in range(steps):
        await asyncio.sleep(per_step)
        preview = None
        if ctx.previews:
            colour = img.colour_from(fingerprint, step)
            preview = img.encode_png(
                max(latent_image.width // 8, 1),
                max(latent_image.height // 8, 1),
                colour,
                colour,
                compress_level=1,
            )
        await ctx.report(step + 1, steps, preview)
    latent = Latent(
        latent_image.width,
        latent_image.height,
        latent_image.batch,
        fingerprint,
        latent_image.seconds,
    )
    return NodeResult((latent,))


async def vae_decode(ctx: NodeContext, samples: Latent, vae: Handle) -> NodeResult:
    fingerprint = _digest(samples.fingerprint, vae.label)
    return NodeResult(
        (ImageBatch(_frames(fingerprint, samples.width, samples.height, samples.batch)),)
    )


async def vae_encode(ctx: NodeContext, pixels: ImageBatch, vae: Handle) -> NodeResult:
    first = pixels.frames[0]
    latent = Latent(
        first.width, first.height, len(pixels.frames), _digest(pixels.frames, vae.label)
    )
    return NodeResult((latent,))


# --- images -----------------------------------------------------------------------------------


async def empty_image(
    ctx: NodeContext, width: int, height: int, batch_size: int, color: int
) -> NodeResult:
    rgb = img.int_to_rgb(color)
    return NodeResult(
        (ImageBatch(tuple(Frame(width, height, rgb, rgb) for _ in range(batch_size))),)
    )


async def image_invert(ctx: NodeContext, image: ImageBatch) -> NodeResult:
    frames = tuple(
        Frame(f.width, f.height, img.invert(f.top), img.invert(f.bottom)) for f in image.frames
    )
    return NodeResult((ImageBatch(frames),))


async def image_scale(
    ctx: NodeContext, image: ImageBatch, upscale_method: str, width: int, height: int, crop: str
) -> NodeResult:
    first = image.frames[0]
    if width == 0 and height == 0:
        return NodeResult((image,))
    if width == 0:
        width = max(1, round(first.width * height / first.height))
    elif height == 0:
        height = max(1, round(first.height * width / first.width))
    return NodeResult(
        (ImageBatch(tuple(Frame(width, height, f.top, f.bottom) for f in image.frames)),)
    )


async def image_blur(
    ctx: NodeContext, image: ImageBatch, blur_radius: int, sigma: float
) -> NodeResult:
    return NodeResult((image,))


async def load_image(ctx: NodeContext, image: str) -> NodeResult:
    path = ctx.roots.annotated_path(image)
    data = await asyncio.to_thread(path.read_bytes)
    size = img.sniff_size(data)
    if size is None:
        raise NodeFailure(
            f"cannot identify image file '{path}'", exception_type="PIL.UnidentifiedImageError"
        )
    frames = _frames(hashlib.sha256(data).hexdigest(), size[0], size[1], 1)
    return NodeResult((ImageBatch(frames), Handle("MASK", f"{size[0]}x{size[1]}")))


async def solid_mask(ctx: NodeContext, value: float, width: int, height: int) -> NodeResult:
    return NodeResult((Handle("MASK", f"{width}x{height}={value}"),))


async def empty_latent_audio(ctx: NodeContext, seconds: float, batch_size: int) -> NodeResult:
    return NodeResult((Latent(0, 0, batch_size, "audio", seconds),))


async def vae_decode_audio(ctx: NodeContext, samples: Latent, vae: Handle) -> NodeResult:
    return NodeResult(
        (Handle("AUDIO", f"{samples.batch}x{samples.seconds}s {_digest(samples, vae)}"),)
    )


async def preview_any(ctx: NodeContext, source: Any = None) -> NodeResult:
    if isinstance(source, str):
        value = source
    elif isinstance(source, (int, float, bool)):
        value = str(source)
    elif source is None:
        value = "None"
    else:
        try:
            value = json.dumps(source)
        except (TypeError, ValueError):
            value = str(source)
    return NodeResult((), {"text": [value]})


async def primitive(ctx: NodeContext, value: Any) -> NodeResult:
    return NodeResult((value,))


async def string_concatenate(
    ctx: NodeContext, string_a: str, string_b: str, delimiter: str
) -> NodeResult:
    return NodeResult((delimiter.join([string_a, string_b]),))


IMPLEMENTATIONS: dict[str, NodeImpl] = {
    "CheckpointLoaderSimple": NodeImpl(checkpoint_loader),
    "VAELoader": NodeImpl(vae_loader),
    "LoraLoader": NodeImpl(lora_loader),
    "CLIPTextEncode": NodeImpl(clip_text_encode),
    "EmptyLatentImage": NodeImpl(empty_latent_image),
    "KSampler": NodeImpl(ksampler, paces_itself=True),
    "VAEDecode": NodeImpl(vae_decode),
    "VAEEncode": NodeImpl(vae_encode),
    "EmptyImage": NodeImpl(empty_image),
    "ImageInvert": NodeImpl(image_invert),
    "ImageScale": NodeImpl(image_scale),
    "ImageBlur": NodeImpl(image_blur),
    "LoadImage": NodeImpl(load_image),
    "SolidMask": NodeImpl(solid_mask),
    "SaveImage": NodeImpl(savers.save_image),
    "PreviewImage": NodeImpl(savers.preview_image),
    "SaveAnimatedWEBP": NodeImpl(savers.save_animated_webp),
    "SaveImageWebsocket": NodeImpl(savers.save_image_websocket, always_changed=True),
    "EmptyLatentAudio": NodeImpl(empty_latent_audio),
    "VAEDecodeAudio": NodeImpl(vae_decode_audio),
    "SaveAudio": NodeImpl(savers.save_audio),
    "PreviewAny": NodeImpl(preview_any),
    "PrimitiveInt": NodeImpl(primitive),
    "PrimitiveFloat": NodeImpl(primitive),
    "PrimitiveString": NodeImpl(primitive),
    "PrimitiveBoolean": NodeImpl(primitive),
    "StringConcatenate": NodeImpl(string_concatenate),
}
