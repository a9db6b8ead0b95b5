"""Output nodes that write files: SaveImage, PreviewImage, SaveAnimatedWEBP, SaveAudio, and
SaveImageWebsocket, which sends its PNGs as binary WebSocket frames instead.

Names follow ComfyUI (``<prefix>_00001_.png``, ``ComfyUI_temp_<5 letters>_00001_.png``); saved
PNGs carry the prompt and ``extra_pnginfo`` as tEXt chunks like ComfyUI's.
"""

from __future__ import annotations

import asyncio
import json
import random
import struct
from pathlib import Path

from comfyfarm.simulator import images as img
from comfyfarm.simulator.node_api import NodeContext, NodeResult
from comfyfarm.simulator.values import Handle, ImageBatch


def _png_text(ctx: NodeContext) -> dict[str, str]:
    text = {"prompt": json.dumps(ctx.prompt)}
    for key, value in (ctx.extra_data.get("extra_pnginfo") or {}).items():
        text[str(key)] = json.dumps(value)
    return text


def _write(files: list[tuple[Path, bytes]]) -> None:
    for path, data in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


async def _save_pngs(
    ctx: NodeContext, images_in: ImageBatch, prefix: str, base: Path, kind: str, level: int
) -> NodeResult:
    first = images_in.frames[0]
    target = ctx.roots.next_save_path(prefix, base, first.width, first.height)
    text = _png_text(ctx)

    def encode() -> list[tuple[Path, bytes]]:
        out = []
        for index, frame in enumerate(images_in.frames):
            stem = target.filename.replace("%batch_num%", str(index))
            name = f"{stem}_{target.counter + index:05}_.png"
            png = img.encode_png(
                frame.width, frame.height, frame.top, frame.bottom, text=text, compress_level=level
            )
            out.append((target.folder / name, png))
        _write(out)
        return out

    written = await asyncio.to_thread(encode)
    ctx.roots.commit_save(target, len(written))
    results = [
        {"filename": p.name, "subfolder": target.subfolder, "type": kind} for p, _ in written
    ]
    return NodeResult((), {"images": results})


async def save_image(ctx: NodeContext, images: ImageBatch, filename_prefix: str) -> NodeResult:
    return await _save_pngs(ctx, images, filename_prefix, ctx.roots.output, "output", 4)


async def preview_image(ctx: NodeContext, images: ImageBatch) -> NodeResult:
    if "prefix" not in ctx.state:
        letters = "abcdefghijklmnopqrstupvxyz"  # sic, ComfyUI's alphabet
        ctx.state["prefix"] = "_temp_" + "".join(random.choice(letters) for _ in range(5))
    return await _save_pngs(ctx, images, "ComfyUI" + ctx.state["prefix"], ctx.roots.temp, "temp", 1)


async def save_animated_webp(
    ctx: NodeContext,
    images: ImageBatch,
    filename_prefix: str,
    fps: float,
    lossless: bool,
    quality: int,
    method: str,
) -> NodeResult:
    first = images.frames[0]
    target = ctx.roots.next_save_path(filename_prefix, ctx.roots.output, first.width, first.height)
    name = f"{target.filename}_{target.counter:05}_.webp"
    await asyncio.to_thread(_write, [(target.folder / name, img.PLACEHOLDER_WEBP)])
    ctx.roots.commit_save(target, 1)
    result = {"filename": name, "subfolder": target.subfolder, "type": "output"}
    return NodeResult((), {"images": [result], "animated": [len(images.frames) != 1]})


async def save_image_websocket(ctx: NodeContext, images: ImageBatch) -> NodeResult:
    total = len(images.frames)
    for step, frame in enumerate(images.frames):
        png = img.encode_png(frame.width, frame.height, frame.top, frame.bottom, compress_level=1)
        await ctx.report(step, total, png)
    return NodeResult((), None)


def _flac_header(seconds: float, rate: int = 44100) -> bytes:
    samples = int(seconds * rate)
    info = struct.pack(">HH", 4096, 4096) + b"\x00" * 6
    packed = (rate << 44) | (1 << 41) | (15 << 36) | samples
    info += packed.to_bytes(8, "big") + b"\x00" * 16
    return b"fLaC" + bytes([0x80, 0, 0, len(info)]) + info


async def save_audio(ctx: NodeContext, audio: Handle, filename_prefix: str) -> NodeResult:
    target = ctx.roots.next_save_path(filename_prefix, ctx.roots.output)
    name = f"{target.filename.replace('%batch_num%', '0')}_{target.counter:05}_.flac"
    await asyncio.to_thread(_write, [(target.folder / name, _flac_header(1.0))])
    ctx.roots.commit_save(target, 1)
    return NodeResult(
        (), {"audio": [{"filename": name, "subfolder": target.subfolder, "type": "output"}]}
    )
