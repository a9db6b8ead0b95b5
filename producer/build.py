"""Turning what a caller has (an API prompt, a prepared workflow job, a JobSpec) and its
JobOptions into a JobSpec: the one builder of ``Farm.submit``, ``submit_many`` and direct mode.

``PreparedLike`` is duck-typed on ``comfyfarm.workflows.PreparedJob`` (prompt, params, inputs,
workflow_name) so this module needs no import of the workflows package.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import PurePosixPath
from typing import Any, Protocol, TypeAlias, runtime_checkable
from urllib.parse import urlsplit

from comfyfarm.tasks.errors import JobSpecError
from comfyfarm.tasks.models import InputFile, JobSpec, new_job_id
from comfyfarm.tasks.options import DELIVERY_OPTIONS, InputLike, InputRefLike, JobOptions
from comfyfarm.tasks.settings import Settings


@runtime_checkable
class PreparedLike(Protocol):
    """A workflow job ready to run: ``workflows.PreparedJob`` or anything with these fields."""

    @property
    def prompt(self) -> dict[str, Any]: ...
    @property
    def params(self) -> dict[str, Any]: ...
    @property
    def inputs(self) -> Sequence[Any]: ...
    @property
    def workflow_name(self) -> str: ...


#: What ``submit`` accepts: an API-format prompt, a prepared workflow job, or a finished JobSpec.
Submittable: TypeAlias = Mapping[str, Any] | PreparedLike | JobSpec

# JobSpec fields build_spec fills itself; every other option that is a JobSpec field is copied.
_COMPOSED = frozenset({"params", "inputs", "workflow_name", "job_id"})


def build_spec(
    item: Submittable,
    settings: Settings | None = None,
    *,
    enqueued_at: float | None = None,
    **options: Any,
) -> JobSpec:
    """A validated JobSpec (raises JobSpecError naming the field); ``options`` are JobOptions
    keywords (an unknown one is a TypeError).

    ``settings``: the farm's, which give the defaults of the deadline (also its cap,
    COMFYFARM_MAX_JOB_SECONDS), stall timeout and retries; None (direct mode, no farm) keeps the
    JobSpec defaults and caps nothing. ``queue`` and ``priority`` do not shape the spec.
    """
    chosen = JobOptions.from_keywords(options, caller="build_spec")
    return SpecBuilder(settings, chosen).build(item, enqueued_at)


class SpecBuilder:
    """Builds JobSpecs from items with one set of options, worked out once (``submit_many``
    builds thousands of specs with the same options)."""

    def __init__(self, settings: Settings | None, options: JobOptions) -> None:
        self.settings = settings
        self.options = options
        given = options.given()
        self._shaping = sorted(set(given) - DELIVERY_OPTIONS)
        copied = {k: v for k, v in given.items() if k in _SPEC_FIELDS and k not in _COMPOSED}
        self._values: dict[str, Any] = {**_farm_defaults(settings), **copied}

    def build(self, item: Submittable, enqueued_at: float | None = None) -> JobSpec:
        """A validated JobSpec for ``item`` (raises JobSpecError naming the field).

        A JobSpec ``item`` is returned as is (only ``enqueued_at`` is stamped); options that
        shape a job are a TypeError with it. For a prepared job, ``params`` update its
        parameter record, ``inputs`` add to its inputs, ``workflow_name`` replaces its name.
        """
        now = time.time() if enqueued_at is None else enqueued_at
        options = self.options
        if isinstance(item, JobSpec):
            if self._shaping:
                raise TypeError(
                    f"options that shape a job ({', '.join(self._shaping)}) cannot be combined "
                    "with a ready JobSpec"
                )
            _check_deadline(item.deadline_seconds, self.settings)
            return JobSpec.from_dict({**item.to_dict(), "enqueued_at": now})
        params = dict(options.params or {})
        if isinstance(item, Mapping):
            prompt = dict(item)
            record = params
            all_inputs = list(options.inputs)
            name = options.workflow_name or ""
        elif isinstance(item, PreparedLike):
            prompt = item.prompt
            record = {**dict(item.params or {}), **params}
            all_inputs = [*item.inputs, *options.inputs]
            name = (
                options.workflow_name
                if options.workflow_name is not None
                else (item.workflow_name or "")
            )
        else:
            raise TypeError(
                f"cannot submit a {type(item).__name__}: pass an API-format prompt dict, a "
                "workflows.PreparedJob or a JobSpec"
            )
        _check_deadline(self._values.get("deadline_seconds"), self.settings)
        return JobSpec(
            job_id=options.job_id or new_job_id(),
            prompt=prompt,
            inputs=[to_input_file(entry, index) for index, entry in enumerate(all_inputs)],
            params=record,
            workflow_name=name,
            enqueued_at=now,
            **self._values,
        )


_SPEC_FIELDS = frozenset(spec.name for spec in fields(JobSpec))


def _farm_defaults(settings: Settings | None) -> dict[str, Any]:
    """The spec values a farm's settings decide when the caller gives none."""
    if settings is None:
        return {}
    return {
        "deadline_seconds": settings.max_job_seconds,
        "stall_timeout_seconds": settings.stall_timeout,
        "max_retries": settings.max_retries,
    }


def to_input_file(entry: InputLike, index: int = 0) -> InputFile:
    """An InputFile from any accepted input form; local paths become absolute."""
    if isinstance(entry, InputFile):
        return entry
    if isinstance(entry, tuple):
        if len(entry) not in (3, 4):
            raise JobSpecError(
                field=f"inputs[{index}]",
                reason="a tuple input is (node_id, input_name, source[, filename])",
            )
        node_id, input_name, source = entry[0], entry[1], entry[2]
        filename = entry[3] if len(entry) == 4 else None
    elif isinstance(entry, InputRefLike):
        node_id, input_name, source = entry.node_id, entry.input_name, entry.source
        filename = getattr(entry, "filename", None)
    else:
        raise JobSpecError(field=f"inputs[{index}]", reason=f"not an input: {entry!r}")
    where = normalise_source(source)
    try:
        return InputFile(
            node_id=str(node_id),
            input_name=str(input_name),
            source=where,
            filename=filename or source_filename(where),
        )
    except JobSpecError as exc:
        raise JobSpecError(field=f"inputs[{index}].{exc.field}", reason=exc.reason) from None


def normalise_source(source: Any) -> str:
    """URLs unchanged; local paths (str or PathLike) made absolute against the current dir."""
    text = os.fspath(source) if isinstance(source, os.PathLike) else str(source)
    if "://" in text:
        return text
    return os.path.abspath(os.path.expanduser(text))


def source_filename(source: str) -> str:
    """The file name a source suggests (the last path part of a URL or path)."""
    path = urlsplit(source).path if "://" in source else source
    return PurePosixPath(path).name or "input"


def _check_deadline(deadline: object, settings: Settings | None) -> None:
    if settings is None:
        return
    if isinstance(deadline, int | float) and deadline > settings.max_job_seconds:
        raise JobSpecError(
            field="deadline_seconds",
            reason=f"{deadline:g} s exceeds COMFYFARM_MAX_JOB_SECONDS={settings.max_job_seconds:g}"
            " (Redis would hand the still-running job to a second worker)",
        )
