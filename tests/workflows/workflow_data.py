"""Paths of the recorded protocol data, the seed and this directory's hand-written fixtures."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
PROTOCOL = TESTS / "protocol"  # copies of the recorded ComfyUI traces
SEED = TESTS / "seed"
DATA = Path(__file__).parent / "data"
OBJECT_INFO = PROTOCOL / "object_info.json"
