"""Fixtures for the workflows tests: the real /object_info of ComfyUI 0.3.64 and the data files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from workflow_data import DATA, OBJECT_INFO

from comfyfarm.workflows import SchemaSource


@pytest.fixture(scope="session")
def object_info() -> dict[str, Any]:
    """The full /object_info (478 classes) of a real ComfyUI that had no model files."""
    if not OBJECT_INFO.is_file():
        pytest.skip("the recorded ComfyUI protocol data is not available")
    return json.loads(OBJECT_INFO.read_text())


@pytest.fixture(scope="session")
def schema(object_info: dict[str, Any]) -> SchemaSource:
    return SchemaSource.from_object_info(object_info)


@pytest.fixture
def data() -> Callable[[str], Any]:
    """Load a JSON file of tests/workflows/data by name."""

    def load(name: str) -> Any:
        return json.loads((DATA / name).read_text())

    return load


@pytest.fixture
def png_file(tmp_path: Path) -> Path:
    """A tiny valid-looking PNG file."""
    path = tmp_path / "input.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    return path
