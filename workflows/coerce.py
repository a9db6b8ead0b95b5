"""Coercion: a user's value for one input, converted to the input's type and checked by its schema.

Users type values on a command line (``steps=30``, ``sampler=euler_a``, ``seed=random``); this
module turns them into what the node expects or explains what is wrong: INT and FLOAT within
``min``/``max`` and on the ``step`` grid (``round`` for FLOAT), STRING, BOOLEAN, and combo
choices with "did you mean" suggestions (a combo of model files says which ``models/`` folder is
missing the file). ``random`` for an INT input is a fresh random integer within its range.

``combo_problem`` is shared with pre-flight validation so both say the same thing.
"""

from __future__ import annotations

import difflib
import math
import random
from typing import Any
from urllib.parse import urlsplit

from comfyfarm.workflows.errors import ParameterError
from comfyfarm.workflows.models import DOWNLOADABLE_MODEL_EXTENSIONS, known_models, model_folder
from comfyfarm.workflows.problems import Problem, Target
from comfyfarm.workflows.schema import InputSpec, SchemaSource

# Random values stay within what every JSON reader can represent exactly (JavaScript included).
MAX_RANDOM = 2**53 - 1
RANDOM = "random"
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


def coerce_value(
    value: Any,
    spec: InputSpec | None,
    target: Target,
    *,
    raw: str | None = None,
    schema: SchemaSource | None = None,
    rng: random.Random | None = None,
) -> Any:
    """``value`` converted for ``spec`` (None: unknown input, value kept); raises ParameterError.

    ``raw`` is the text the value was parsed from: a STRING input keeps ``"007"`` as typed.
    """
    if spec is None:
        return value
    if value == RANDOM and spec.type == "INT":
        return random_int(spec, rng)
    if not spec.is_widget:
        if spec.type == "*":
            return value
        raise _fail(
            target.problem(
                "bad_value",
                f"takes a link ({spec.type}), not a value",
                "set a widget input instead, or change the link in the editor",
            )
        )
    if spec.type == "INT":
        return _check_number(_to_int(value, target), spec, target)
    if spec.type == "FLOAT":
        return _check_number(_to_float(value, target), spec, target)
    if spec.type == "STRING":
        if isinstance(value, str):
            return value
        return raw if raw is not None else str(value)
    if spec.type == "BOOLEAN":
        return _to_bool(value, target)
    return _check_combo(value, spec, target, schema)


def random_int(spec: InputSpec, rng: random.Random | None = None) -> int:
    """A random integer within the input's range (capped at 2**53-1)."""
    low = int(spec.minimum) if spec.minimum is not None else 0
    high = int(spec.maximum) if spec.maximum is not None else MAX_RANDOM
    high = max(low, min(high, MAX_RANDOM))
    return (rng or random).randint(low, high)


def model_url_problem(url: str, target: Target) -> Problem | None:
    """A model named by URL is fetched by the worker (``--models-dir``): only its file name is
    checked here."""
    name = urlsplit(url).path.rsplit("/", 1)[-1].lower()
    if name.endswith(DOWNLOADABLE_MODEL_EXTENSIONS):
        return None
    return target.problem(
        "invalid_model_url",
        f"a model URL must name a file ending in {', '.join(DOWNLOADABLE_MODEL_EXTENSIONS)}",
        "link to the model file itself (e.g. …/resolve/main/model.safetensors)",
    )


def combo_problem(
    value: Any, spec: InputSpec, target: Target, schema: SchemaSource | None
) -> Problem | None:
    """Why ``value`` is not a valid choice of the combo ``spec`` (None when it is)."""
    options = [str(option) for option in spec.options or ()]
    folder = model_folder(target.class_type or "", spec, value)
    if folder is not None and isinstance(value, str) and value.startswith(("https://", "http://")):
        return model_url_problem(value, target)
    if folder is not None:
        listed = known_models(schema, folder) if schema is not None else []
        if spec.options is None or value in (spec.options or ()) or value in listed:
            return None
        choices = sorted(set(options) | set(listed))
        fix = f"put {value} in " + (f"models/{folder}" if not folder.startswith("the ") else folder)
        close = difflib.get_close_matches(str(value), choices, n=3, cutoff=0.6)
        if close:
            fix = f"did you mean {_either(close)}? otherwise {fix}"
        have = f"{len(choices)} installed: {_short(choices)}" if choices else "none installed"
        return target.problem("missing_model", f"model {value!r} is not installed ({have})", fix)
    if spec.options is None or value in spec.options:
        return None
    close = difflib.get_close_matches(str(value), options, n=3, cutoff=0.5)
    lowered = [o for o in options if o.lower() == str(value).lower()]
    suggestions = list(dict.fromkeys(lowered + close))
    hint = f"did you mean {_either(suggestions)}?" if suggestions else None
    message = f"{value!r} is not one of {_short(options)}"
    return target.problem("value_not_in_list", message, hint)


def _check_combo(value: Any, spec: InputSpec, target: Target, schema: SchemaSource | None) -> Any:
    if spec.options is not None and value not in spec.options and not isinstance(value, str):
        if str(value) in spec.options:  # "--set ...=1" meant the choice "1"
            return str(value)
    problem = combo_problem(value, spec, target, schema)
    if problem is not None:
        raise _fail(problem)
    return value


def _to_int(value: Any, target: Target) -> int:
    if isinstance(value, bool):
        raise _fail(target.problem("invalid_input_type", f"expected an integer, got {value}"))
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                number = math.nan
            if number.is_integer():
                return int(number)
    seed = target.input_name in ("seed", "noise_seed")
    fix = "use a whole number" + (", or 'random'" if seed else "")
    raise _fail(target.problem("invalid_input_type", f"expected an integer, got {value!r}", fix))


def _to_float(value: Any, target: Target) -> float:
    if isinstance(value, bool):
        raise _fail(target.problem("invalid_input_type", f"expected a number, got {value}"))
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise _fail(target.problem("invalid_input_type", f"expected a number, got {value!r}"))


def _to_bool(value: Any, target: Target) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _fail(target.problem("invalid_input_type", f"expected true or false, got {value!r}"))


def _check_number(value: float, spec: InputSpec, target: Target) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        message = f"expected a finite number, got {value}"
        raise _fail(target.problem("invalid_input_type", message, "use a number such as 7.5"))
    low, high, step = spec.minimum, spec.maximum, spec.step
    if low is not None and value < low:
        message = f"{_num(value)} is smaller than the minimum {_num(low)}"
        raise _fail(target.problem("value_smaller_than_min", message, f"use {_num(low)} or more"))
    if high is not None and value > high:
        message = f"{_num(value)} is bigger than the maximum {_num(high)}"
        raise _fail(target.problem("value_bigger_than_max", message, f"use {_num(high)} or less"))
    if step is not None and (step != 1 or spec.type == "FLOAT"):
        base = low if low is not None else 0
        steps = (value - base) / step
        if abs(steps - round(steps)) > 1e-6:
            below = base + math.floor(steps) * step
            message = f"{_num(value)} is not on the step grid of {_num(step)}"
            fix = f"use {_num(below)} or {_num(below + step)}"
            raise _fail(target.problem("value_not_on_step", message, fix))
    return value


def _num(value: float) -> str:
    if isinstance(value, float):
        return f"{round(value, 10):g}"
    return str(value)


def _either(choices: list[str]) -> str:
    return " or ".join(repr(choice) for choice in choices)


def _short(options: list[str], limit: int = 12) -> str:
    shown = ", ".join(options[:limit])
    more = f", ... ({len(options) - limit} more)" if len(options) > limit else ""
    return f"[{shown}{more}]"


def _fail(problem: Problem) -> ParameterError:
    return ParameterError(problems=[problem])
