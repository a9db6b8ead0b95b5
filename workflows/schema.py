"""SchemaSource: the node schemas of one ComfyUI (its ``/object_info``) plus its model lists.

A schema source is what conversion, coercion and validation are driven by. It comes from a live
ComfyUI (``from_url``, through ``comfyfarm.comfy.schemas.fetch_schemas``), from a
saved copy of ``/object_info`` (``from_file``) or from a dict (``from_object_info``).

``InputSpec`` reads one input entry (``["INT", {"min": 1, ...}]``, ``[["a", "b"], {}]``,
``["COMBO", {"options": [...]}]``, ``"PROMPT"`` for hidden inputs) once, so the rest of the package
never looks at raw ``/object_info`` lists.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from comfyfarm.workflows.errors import SchemaUnavailable

WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})
# The editor gives these inputs a control_after_generate widget even when the schema does not ask.
SEED_NAMES = frozenset({"seed", "noise_seed"})
UPLOAD_FLAGS = ("image_upload", "video_upload", "audio_upload", "file_upload")


@dataclass(frozen=True)
class InputSpec:
    """One input of a node class, as ``/object_info`` describes it."""

    name: str
    type: str  # "INT", "FLOAT", "STRING", "BOOLEAN", "COMBO", or a link type ("MODEL", "*", ...)
    section: str  # "required", "optional" or "hidden"
    options: tuple[Any, ...] | None = None  # combo choices; None when the list is unknown (remote)
    config: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, name: str, section: str, raw: Any) -> InputSpec:
        """Read one raw ``/object_info`` input entry."""
        if isinstance(raw, str):  # hidden inputs: "PROMPT", "UNIQUE_ID", ...
            return cls(name, raw, section)
        if not isinstance(raw, (list, tuple)) or not raw:
            return cls(name, "*", section)
        kind = raw[0]
        config = raw[1] if len(raw) > 1 and isinstance(raw[1], dict) else {}
        if isinstance(kind, (list, tuple)):
            return cls(name, "COMBO", section, tuple(kind), config)
        if kind == "COMBO":
            options = config.get("options")
            listed = (
                tuple(options) if isinstance(options, list) and "remote" not in config else None
            )
            return cls(name, "COMBO", section, listed, config)
        return cls(name, str(kind), section, None, config)

    @cached_property
    def is_widget(self) -> bool:
        """True when the editor shows this as a widget (it takes a ``widgets_values`` slot)."""
        return (
            self.section != "hidden"
            and self.type in WIDGET_TYPES
            and not self.config.get("forceInput", False)
        )

    @property
    def is_link_only(self) -> bool:
        """True for inputs that only accept a link (MODEL, IMAGE, forceInput widgets, ...)."""
        return not self.is_widget

    @property
    def has_control_widget(self) -> bool:
        """True when the editor adds a control_after_generate widget right after this one."""
        if not self.is_widget:
            return False
        flag = self.config.get("control_after_generate")
        if self.type == "INT" and flag is None:  # an explicit false wins over the name
            return self.name in SEED_NAMES
        return bool(flag)

    @property
    def is_upload(self) -> bool:
        """True for inputs that name an uploaded file (``image`` of LoadImage and the like)."""
        return any(self.config.get(flag) for flag in UPLOAD_FLAGS)

    @cached_property
    def minimum(self) -> float | None:
        value = self.config.get("min")
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    @cached_property
    def choices(self) -> frozenset[Any] | None:
        """The combo choices as a set (fast membership); None when unknown or unhashable."""
        if self.options is None:
            return None
        try:
            return frozenset(self.options)
        except TypeError:
            return None

    @cached_property
    def maximum(self) -> float | None:
        value = self.config.get("max")
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    @property
    def step(self) -> float | None:
        """The granularity a value must keep: ``round`` for FLOAT when given, else ``step``."""
        if self.type == "FLOAT" and "round" in self.config:
            rounding = self.config["round"]
            if rounding is False or not isinstance(rounding, (int, float)) or rounding <= 0:
                return None
            return float(rounding)
        value = self.config.get("step")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return value
        return None

    def default_value(self) -> Any:
        """What the editor shows for a widget nobody set: the default, else a neutral value."""
        if "default" in self.config:
            return self.config["default"]
        if self.type == "COMBO":
            return self.options[0] if self.options else None
        neutral: dict[str, Any] = {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}
        value = neutral.get(self.type)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            low, high = self.minimum, self.maximum
            if low is not None and value < low:
                value = low
            if high is not None and value > high:
                value = high
        return value

    def input_config(self) -> list[Any]:
        """The entry back in ``/object_info`` shape (ComfyUI's ``input_config``)."""
        kind: Any = list(self.options) if self.options is not None else self.type
        return [kind, dict(self.config)]


@dataclass(frozen=True)
class NodeSchema:
    """One node class: inputs in the editor's order, outputs, and whether it is an output node."""

    class_type: str
    display_name: str
    inputs: Mapping[str, InputSpec]  # required, then optional, then hidden, each in input_order
    outputs: tuple[Any, ...]  # output types; a list entry is a combo output
    output_names: tuple[str, ...]
    output_node: bool

    @classmethod
    def parse(cls, class_type: str, raw: Mapping[str, Any]) -> NodeSchema:
        """Read one ``/object_info`` entry."""
        declared = _mapping(raw.get("input"))
        order = _mapping(raw.get("input_order"))
        inputs: dict[str, InputSpec] = {}
        for section in ("required", "optional", "hidden"):
            entries = declared.get(section) or {}
            if not isinstance(entries, dict):
                continue
            names = [n for n in (order.get(section) or []) if n in entries]
            names += [n for n in entries if n not in names]
            for name in names:
                inputs[name] = InputSpec.parse(name, section, entries[name])
        outputs = _sequence(raw.get("output"))
        names_out = _sequence(raw.get("output_name"))
        return cls(
            class_type=class_type,
            display_name=str(raw.get("display_name") or class_type),
            inputs=inputs,
            outputs=tuple(outputs),
            output_names=tuple(str(n) for n in names_out),
            output_node=bool(raw.get("output_node", False)),
        )

    @property
    def widget_inputs(self) -> list[InputSpec]:
        """Inputs that take ``widgets_values`` slots, in slot order."""
        return [spec for spec in self.inputs.values() if spec.is_widget]

    def output_type(self, slot: int) -> str | None:
        """Type of output ``slot`` (``"COMBO"`` for list outputs), None when out of range."""
        if not 0 <= slot < len(self.outputs):
            return None
        kind = self.outputs[slot]
        return "COMBO" if isinstance(kind, list) else str(kind)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _sequence(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []


def types_match(received: str, expected: str) -> bool:
    """ComfyUI's link type rule: equal, ``*`` on either side, or comma-separated sets overlap."""
    if received == expected:
        return True
    got = {part.strip() for part in received.split(",")}
    want = {part.strip() for part in expected.split(",")}
    if "*" in got or "*" in want or "" in got or "" in want:
        return True
    return bool(got & want)


class SchemaSource:
    """Node schemas and model lists of one ComfyUI, read once and parsed on demand."""

    def __init__(
        self,
        object_info: Mapping[str, Any],
        *,
        models: Mapping[str, Sequence[str]] | None = None,
        origin: str = "<object_info>",
    ) -> None:
        self._raw = dict(object_info)
        self._parsed: dict[str, NodeSchema] = {}
        self.models: dict[str, list[str]] = {k: list(v) for k, v in (models or {}).items()}
        self.origin = origin

    @classmethod
    def from_object_info(
        cls, object_info: Mapping[str, Any], *, models: Mapping[str, Sequence[str]] | None = None
    ) -> SchemaSource:
        """Use an ``/object_info`` answer that is already in memory."""
        if not isinstance(object_info, Mapping):
            raise SchemaUnavailable(source="<object_info>", reason="not a JSON object")
        return cls(object_info, models=models)

    @classmethod
    def from_file(cls, path: str | Path) -> SchemaSource:
        """Read a saved ``/object_info`` (``curl http://comfy:8188/object_info > oi.json``)."""
        where = str(path)
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise SchemaUnavailable(source=where, reason=exc.strerror or str(exc)) from exc
        except json.JSONDecodeError as exc:
            reason = f"not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
            raise SchemaUnavailable(source=where, reason=reason) from exc
        if not isinstance(data, dict):
            raise SchemaUnavailable(source=where, reason="not a JSON object of node classes")
        return cls(data, origin=where)

    @classmethod
    def from_url(
        cls, comfy_url: str, *, timeout: float = 10.0, include_models: bool = True
    ) -> SchemaSource:
        """Fetch ``/object_info`` (and the ``/models/{folder}`` lists) from a live ComfyUI."""
        # Lazily: the ComfyUI client is needed only here, not by the many users of saved schemas.
        from comfyfarm.comfy.client import ComfyClient
        from comfyfarm.comfy.errors import ComfyError, ComfyRequestError, ComfyUnavailable
        from comfyfarm.comfy.schemas import fetch_schemas

        base = comfy_url.rstrip("/")
        try:
            with ComfyClient(base, timeout=timeout) as client:
                fetched = fetch_schemas(client, include_models=include_models)
        except ComfyUnavailable as exc:
            raise SchemaUnavailable(
                source=base, reason=f"ComfyUI is not reachable or not answering JSON ({exc.reason})"
            ) from exc
        except ComfyRequestError as exc:
            raise SchemaUnavailable(
                source=base, reason=f"/object_info answered HTTP {exc.status}: is this a ComfyUI?"
            ) from exc
        except ComfyError as exc:
            raise SchemaUnavailable(source=base, reason=str(exc)) from exc
        return cls(fetched.object_info, models=fetched.models, origin=base)

    def node(self, class_type: str) -> NodeSchema | None:
        """The schema of ``class_type``, or None when this ComfyUI does not have that node."""
        cached = self._parsed.get(class_type)
        if cached is not None:
            return cached
        raw = self._raw.get(class_type)
        if not isinstance(raw, Mapping):
            return None
        parsed = NodeSchema.parse(class_type, raw)
        self._parsed[class_type] = parsed
        return parsed

    def __contains__(self, class_type: object) -> bool:
        return isinstance(class_type, str) and isinstance(self._raw.get(class_type), Mapping)

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    @property
    def class_types(self) -> list[str]:
        return list(self._raw)
