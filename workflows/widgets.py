"""Widget values: a node's ``widgets_values`` read into named inputs, as the editor serializes them.

The editor (comfyui-frontend-package 1.27.10, checked against it by ``tools/editor_oracle``) gives a
node one widget per schema widget input, in the schema's input order (required, then optional),
plus widgets of its own, and fills them from ``widgets_values`` strictly by position:

- an input with a control_after_generate widget takes a second slot that is never sent: an INT
  whose spec says ``control_after_generate`` (an explicit ``false`` wins over the name), else an
  INT called ``seed``/``noise_seed``; any other widget only when its spec says so;
- a combo fed by a remote list (``remote``) is followed by an "auto-refresh" toggle (a slot,
  never sent) and, with ``remote.refresh_button``, a ``refresh`` button (a slot, sent);
- the editor's own widgets that ``/object_info`` does not list (``EDITOR_WIDGETS``: audio players,
  3D previews, the PreviewAny text box, the audio recorder) are sent with their own value (``""``:
  nothing a saved file can hold); some take a slot, some do not; upload buttons trail, unsent;
- before reading, the editor drops the slots that belonged to inputs now forced to be sockets
  (its ``migrateWidgetsValues``: only when the slot count matches the old layout exactly).

Missing or null values fall back to the widget default, dict ``widgets_values`` are keyed by
input name, and array values are wrapped as ``{"__value__": [...]}`` so the server does not take
them for links. Widgets the browser itself fills when exporting (a webcam frame, a 3D viewport
render) cannot be reproduced: ``browser_captured`` names them so conversion can refuse.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from comfyfarm.workflows.schema import SEED_NAMES, InputSpec, NodeSchema

# What a control_after_generate slot holds; very old workflows stored a boolean there.
CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize"})


@dataclass(frozen=True)
class EditorWidget:
    """A widget the editor adds to a node class that its schema does not list."""

    name: str
    slot: bool  # takes a widgets_values slot
    default: Any = ""


# Sent widgets the editor adds on its own (frontend 1.27.10), appended after the schema widgets;
# they export their own value ("" here: nothing recorded or rendered), never what a slot holds.
_AUDIO_UI = (EditorWidget("audioUI", slot=False),)
_VIEWPORT = (EditorWidget("image", slot=True),)
EDITOR_WIDGETS: Mapping[str, tuple[EditorWidget, ...]] = {
    "LoadAudio": _AUDIO_UI,
    "SaveAudio": _AUDIO_UI,
    "SaveAudioMP3": _AUDIO_UI,
    "SaveAudioOpus": _AUDIO_UI,
    "PreviewAudio": _AUDIO_UI,
    "Preview3D": _VIEWPORT,
    "Preview3DAnimation": _VIEWPORT,
    "SaveGLB": _VIEWPORT,
    "PreviewAny": (EditorWidget("preview", slot=False),),
    "RecordAudio": (EditorWidget("audio", slot=True),),
}
# Node classes whose exported value the browser makes at export time (camera, 3D render).
BROWSER_CAPTURED: Mapping[str, str] = {
    "WebcamCapture": "image (a frame the browser grabs from the camera)",
    "Load3D": "image (a render of the browser's 3D viewport)",
    "Load3DAnimation": "image (a render of the browser's 3D viewport)",
}


@dataclass(frozen=True)
class Widget:
    """One widget of a node in the editor, in slot order."""

    name: str
    spec: InputSpec | None  # the schema input it edits; None for the editor's own widgets
    slot: bool = True
    sent: bool = True
    default: Any = None
    fixed: bool = False  # sent as ``default`` whatever its slot holds (the editor's own widgets)

    def value_of(self, raw: Any) -> Any:
        if self.fixed:
            return self.default
        if raw is not None:
            return raw
        return self.spec.default_value() if self.spec is not None else self.default


def is_control_value(value: Any) -> bool:
    return isinstance(value, bool) or (isinstance(value, str) and value in CONTROL_VALUES)


def wrap_value(value: Any) -> Any:
    """Arrays are reserved for links in API format; a literal array travels as ``__value__``."""
    return {"__value__": value} if isinstance(value, list) else value


def browser_captured(class_type: str) -> str | None:
    """The widget of ``class_type`` that only a browser can fill, if any."""
    return BROWSER_CAPTURED.get(class_type)


def editor_widgets(schema: NodeSchema) -> list[Widget]:
    """The node's widgets as the editor creates them, in order."""
    widgets: list[Widget] = []
    for spec in schema.widget_inputs:
        widgets.append(Widget(spec.name, spec))
        if spec.has_control_widget:
            widgets.append(Widget("control_after_generate", None, sent=False))
        remote = spec.config.get("remote")
        if spec.type == "COMBO" and isinstance(remote, Mapping):
            widgets.append(Widget("auto_refresh", None, sent=False))
            if remote.get("refresh_button"):
                widgets.append(Widget("refresh", None, default="refresh"))
    for extra in EDITOR_WIDGETS.get(schema.class_type, ()):
        widgets.append(Widget(extra.name, None, slot=extra.slot, default=extra.default, fixed=True))
    return widgets


def migrate_values(values: list[Any], schema: NodeSchema) -> list[Any]:
    """The editor's ``migrateWidgetsValues``: drop slots saved for inputs that are forceInput now.

    It pairs inputs with slots one to one (not two for control widgets), exactly as the editor
    does, and only when the slot count equals the old layout's."""
    old = [
        spec
        for spec in schema.inputs.values()
        if spec.section != "hidden" and (spec.is_widget or spec.config.get("forceInput"))
    ]
    if not any(spec.config.get("forceInput") for spec in old):
        return values
    count = sum(
        2 if spec.config.get("control_after_generate") or spec.name in SEED_NAMES else 1
        for spec in old
    )
    if count != len(values):
        return values
    kept = [v for spec, v in zip(old, values, strict=False) if not spec.config.get("forceInput")]
    return kept + values[len(old) :]


def read_widgets(values: list[Any] | dict[str, Any] | None, schema: NodeSchema) -> dict[str, Any]:
    """Named values of the widgets the editor sends, taken from ``values``."""
    named: dict[str, Any] = {}
    widgets = [w for w in editor_widgets(schema) if w.sent]
    if isinstance(values, dict):
        for widget in widgets:
            named[widget.name] = widget.value_of(values.get(widget.name))
        return named
    slots = migrate_values(list(values or []), schema)
    index = 0
    for widget in editor_widgets(schema):
        raw = None
        if widget.slot:
            raw = slots[index] if index < len(slots) else None
            index += 1
        if widget.sent:
            named[widget.name] = widget.value_of(raw)
    return named


def widget_inputs(
    values: list[Any] | dict[str, Any] | None,
    schema: NodeSchema,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """API ``inputs`` holding every widget value of one node (links are added afterwards)."""
    named = read_widgets(values, schema)
    if overrides:
        for name, value in overrides.items():
            if name in named:
                named[name] = value
    return {name: wrap_value(value) for name, value in named.items()}
