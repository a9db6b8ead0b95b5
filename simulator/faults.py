"""Fault injection: a small table of named faults, each with parameters and a trigger.

Job faults are considered once per executed prompt (the "occurrence" is a job); request faults
once per matching HTTP request. A trigger narrows when an armed fault fires:

    nth=N     only the N-th occurrence          times=N   at most N times
    rate=P    with probability P (seeded RNG)    (none)    every occurrence

| fault       | kind    | parameters (defaults)                                            |
|-------------|---------|------------------------------------------------------------------|
| crash       | job     | after_ms=0: os._exit N ms into the job (if it still runs)        |
| hang        | job     | after_ms=0: the job stops progressing forever, interrupts ignored |
| drop_ws     | job     | after_ms=0: every WebSocket cut without a close frame            |
| node_error  | job     | node_id, class_type (first executed node matching; any if unset), |
|             |         | exception_type="RuntimeError", message                           |
| evil_output | job     | mode=dotdot|absolute|nul|subfolder: reported output names unsafe |
| prompt_5xx  | request | status=500: POST /prompt fails before doing anything             |
| view_500    | request | status=500: GET /view fails                                      |
| view_slow   | request | bytes_per_second=65536: GET /view trickles                       |
| garbage     | request | route="/history", mode=html|garbage|truncated|empty, status=200  |
| bloat       | request | route="/history", bytes=1048576: a JSON answer padded to that    |
|             |         | size (an extra key), or /view streams that many bytes            |
| ws_bomb     | job     | after_ms=0, length=2**40, trickle_ms=200: a raw frame header     |
|             |         | announcing ``length`` bytes on the job's socket, then one byte   |
|             |         | every trickle_ms (a frame that never ends)                       |

Random faults (``--fault-rate``): each job or request rolls for every kind in ``random_kinds``.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

JOB_FAULTS = ("crash", "hang", "drop_ws", "node_error", "evil_output", "ws_bomb")
REQUEST_FAULTS = ("prompt_5xx", "view_500", "view_slow", "garbage", "bloat")

DEFAULTS: dict[str, dict[str, Any]] = {
    "crash": {"after_ms": 0},
    "hang": {"after_ms": 0},
    "drop_ws": {"after_ms": 0},
    "node_error": {
        "node_id": None,
        "class_type": None,
        "exception_type": "RuntimeError",
        "message": "Simulated failure (comfyfarm-sim fault injection)",
    },
    "evil_output": {"mode": "dotdot"},
    "prompt_5xx": {"status": 500},
    "view_500": {"status": 500},
    "view_slow": {"bytes_per_second": 65536},
    "garbage": {"route": "/history", "mode": "html", "status": 200},
    "bloat": {"route": "/history", "bytes": 1 << 20},
    "ws_bomb": {"after_ms": 0, "length": 1 << 40, "trickle_ms": 200},
}
CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("evil_output", "mode"): ("dotdot", "absolute", "nul", "subfolder"),
    ("garbage", "mode"): ("html", "garbage", "truncated", "empty"),
}
TRIGGER_KEYS = ("nth", "times", "rate")
RANDOM_KINDS = ("node_error", "drop_ws", "prompt_5xx", "view_500")


class FaultError(ValueError):
    """Raised when a fault name, parameter or value is not one this table knows."""

    def __init__(self, message: str, *, fault: str | None = None) -> None:
        super().__init__(message)
        self.fault = fault


@dataclass
class Fault:
    """One armed fault and how often it has been considered and fired."""

    name: str
    params: dict[str, Any]
    nth: int | None = None
    times: int | None = None
    rate: float | None = None
    occurrences: int = 0
    fired: int = 0

    def to_dict(self) -> dict[str, Any]:
        trigger = {"nth": self.nth, "times": self.times, "rate": self.rate}
        counts = {"occurrences": self.occurrences, "fired": self.fired}
        return {**self.params, **trigger, **counts}


@dataclass
class FaultTable:
    """The armed faults of one simulator."""

    seed: int | None = None
    random_rate: float = 0.0
    random_kinds: tuple[str, ...] = RANDOM_KINDS
    faults: dict[str, Fault] = field(default_factory=dict)
    random_fired: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def arm(self, name: str, spec: dict[str, Any]) -> Fault:
        if name not in DEFAULTS:
            raise FaultError(f"unknown fault {name!r}; known: {', '.join(DEFAULTS)}", fault=name)
        params = dict(DEFAULTS[name])
        trigger: dict[str, Any] = {}
        for key, value in spec.items():
            if key in TRIGGER_KEYS:
                trigger[key] = _trigger_value(name, key, value)
            elif key in params:
                choices = CHOICES.get((name, key))
                if choices and value not in choices:
                    raise FaultError(
                        f"{name}.{key} must be one of {', '.join(choices)}", fault=name
                    )
                params[key] = value
            else:
                raise FaultError(f"fault {name!r} has no parameter {key!r}", fault=name)
        fault = Fault(name, params, **trigger)
        self.faults[name] = fault
        return fault

    def update(self, body: Any) -> None:
        """Apply a POST /_sim/faults body: ``{name: params | null, "reset": bool, ...}``."""
        if not isinstance(body, dict):
            raise FaultError("the body must be a JSON object")
        if body.get("reset"):
            self.faults.clear()
            self.random_rate = 0.0
        if "seed" in body:
            self._rng = random.Random(body["seed"])
            self.seed = body["seed"]
        if "random_rate" in body:
            self.random_rate = float(body["random_rate"])
        if "random_kinds" in body:
            self.random_kinds = _kinds(body["random_kinds"])
        for name, spec in body.items():
            if name in ("reset", "seed", "random_rate", "random_kinds"):
                continue
            if spec is None or spec is False:
                self.faults.pop(name, None)
            elif spec is True:
                self.arm(name, {})
            elif isinstance(spec, dict):
                self.arm(name, spec)
            else:
                raise FaultError(f"fault {name!r}: expected an object, null or true", fault=name)

    def check(self, name: str) -> dict[str, Any] | None:
        """Count one occurrence of ``name``; its parameters when it fires now, else None."""
        fault = self.faults.get(name)
        if fault is not None:
            fault.occurrences += 1
            if self._fires(fault):
                fault.fired += 1
                return fault.params
            return None
        if self.random_rate and name in self.random_kinds and self._rng.random() < self.random_rate:
            self.random_fired[name] = self.random_fired.get(name, 0) + 1
            return dict(DEFAULTS[name])
        return None

    def peek(self, name: str) -> dict[str, Any] | None:
        """The parameters of an armed fault without counting an occurrence."""
        fault = self.faults.get(name)
        return fault.params if fault is not None else None

    def _fires(self, fault: Fault) -> bool:
        if fault.nth is not None and fault.occurrences != fault.nth:
            return False
        if fault.times is not None and fault.fired >= fault.times:
            return False
        return fault.rate is None or self._rng.random() < fault.rate

    def snapshot(self) -> dict[str, Any]:
        return {
            "faults": {name: fault.to_dict() for name, fault in self.faults.items()},
            "random": {
                "rate": self.random_rate,
                "kinds": list(self.random_kinds),
                "seed": self.seed,
                "fired": dict(self.random_fired),
            },
        }


def _trigger_value(name: str, key: str, value: Any) -> int | float:
    if key == "rate":
        if not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise FaultError(f"{name}.rate must be a number between 0 and 1", fault=name)
        return float(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise FaultError(f"{name}.{key} must be a positive integer", fault=name)
    return value


def _kinds(value: Any) -> tuple[str, ...]:
    kinds = tuple(value.split(",")) if isinstance(value, str) else tuple(value)
    unknown = [k for k in kinds if k not in DEFAULTS]
    if unknown:
        raise FaultError(f"unknown fault kinds: {', '.join(unknown)}")
    return kinds


def parse_fault_spec(text: str) -> tuple[str, dict[str, Any]]:
    """``"crash:after_ms=500,nth=2"`` -> ``("crash", {"after_ms": 500, "nth": 2})``."""
    name, _, rest = text.partition(":")
    params: dict[str, Any] = {}
    for part in filter(None, rest.split(",")):
        key, sep, raw = part.partition("=")
        if not sep:
            raise FaultError(f"fault {name!r}: expected key=value, got {part!r}", fault=name)
        try:
            params[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            params[key.strip()] = raw
    return name.strip(), params


def parse_kinds(text: str) -> tuple[str, ...]:
    return _kinds([k.strip() for k in text.split(",") if k.strip()])
