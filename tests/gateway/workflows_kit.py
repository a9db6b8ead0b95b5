"""Workflows for the gateway tests, in API format (what a comfy-sdk program submits)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

LIBRARY = Path(__file__).resolve().parents[2] / "workflows" / "library"


def api_workflow(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((LIBRARY / f"{name}.api.json").read_text())
    return data


def ui_workflow(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((LIBRARY / f"{name}.json").read_text())
    return data


def invert(width: int = 64, height: int = 48) -> dict[str, Any]:
    """EmptyImage → ImageInvert → SaveImage, quick on the simulator."""
    wf = api_workflow("empty_invert")
    wf["1"]["inputs"].update(width=width, height=height)
    return wf


def text2image(steps: int = 3) -> dict[str, Any]:
    wf = api_workflow("sd15_text2image")
    wf["3"]["inputs"]["steps"] = steps
    return wf


def load_invert_save(image: Any) -> dict[str, Any]:
    """LoadImage → ImageInvert → SaveImage; ``image`` is what goes into LoadImage.image."""
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": image}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"filename_prefix": "inv", "images": ["2", 0]}},
    }


def broken(wf: dict[str, Any]) -> dict[str, Any]:
    """``wf`` with two problems in two nodes (a bad combo value, a value out of range)."""
    bad = copy.deepcopy(wf)
    bad["3"]["inputs"]["sampler_name"] = "no-such-sampler"
    bad["5"]["inputs"]["width"] = -5
    return bad
