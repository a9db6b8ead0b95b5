"""Image bytes without Pillow: PNG encoding (zlib + struct) and image-size sniffing.

The simulator's pictures are vertical two-colour gradients: cheap to encode (rows repeat, so
zlib is fast) yet distinct per seed, which is all a client can check.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import zlib
from collections.abc import Mapping

RGB = tuple[int, int, int]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# A valid 1x1 lossless WebP; SaveAnimatedWEBP writes it (the simulator does not encode WebP).
PLACEHOLDER_WEBP = base64.b64decode("UklGRhoAAABXRUJQVlA4TA0AAAAvAAAAEAcQERGIiP4HAA==")


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def encode_png(
    width: int,
    height: int,
    top: RGB,
    bottom: RGB,
    *,
    text: Mapping[str, str] | None = None,
    compress_level: int = 4,
) -> bytes:
    """An 8-bit RGB PNG shading from ``top`` to ``bottom``; ``text`` becomes tEXt chunks.

    ComfyUI's SaveImage stores the prompt and the workflow as tEXt chunks; so do we.
    """
    rows: dict[RGB, bytes] = {}
    parts: list[bytes] = []
    span = max(height - 1, 1)
    for y in range(height):
        colour = (
            top[0] + (bottom[0] - top[0]) * y // span,
            top[1] + (bottom[1] - top[1]) * y // span,
            top[2] + (bottom[2] - top[2]) * y // span,
        )
        row = rows.get(colour)
        if row is None:
            row = rows[colour] = b"\x00" + bytes(colour) * width
        parts.append(row)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunks = [PNG_SIGNATURE, _chunk(b"IHDR", header)]
    for key, value in (text or {}).items():
        chunks.append(_chunk(b"tEXt", key.encode("latin-1") + b"\x00" + value.encode("latin-1")))
    chunks.append(_chunk(b"IDAT", zlib.compress(b"".join(parts), compress_level)))
    chunks.append(_chunk(b"IEND", b""))
    return b"".join(chunks)


def colour_from(*parts: object) -> RGB:
    """A deterministic colour for any tuple of values (seeds, prompts, file hashes)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return digest[0], digest[1], digest[2]


def invert(colour: RGB) -> RGB:
    return 255 - colour[0], 255 - colour[1], 255 - colour[2]


def int_to_rgb(value: int) -> RGB:
    """EmptyImage's ``color`` input: 0xRRGGBB."""
    return (value >> 16) & 0xFF, (value >> 8) & 0xFF, value & 0xFF


def sniff_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a PNG, JPEG, GIF, BMP or WebP file; None when Pillow would not open it."""
    if data.startswith(PNG_SIGNATURE) and len(data) >= 24 and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return int(width), int(height)
    if data.startswith(b"BM") and len(data) >= 26:
        width, height = struct.unpack("<ii", data[18:26])
        return abs(int(width)), abs(int(height))
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return _webp_size(data)
    if data.startswith(b"\xff\xd8"):
        return _jpeg_size(data)
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    kind = data[12:16]
    if kind == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8 " and len(data) >= 30:
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if kind == b"VP8X" and len(data) >= 30:
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    pos = 2
    while pos + 9 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return int(width), int(height)
        pos += 2 + length
    return None
