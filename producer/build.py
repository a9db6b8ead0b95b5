"""Turning what a caller has (an API prompt, a prepared workflow job, a JobSpec) into a JobSpec.

``PreparedLike`` is duck-typed on ``comfyfarm.workflows.PreparedJob`` (prompt, params, inputs,
workflow_name) so this module needs no import of the workflows package.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any, Protocol, TypeAlias, runtime_checkable
from urllib.parse import urlsplit

from comfyfarm.tasks.errors import JobSpecError
from comfyfarm.tasks.models import InputFile, JobSpec, new_job_id
from comfyfarm.tasks.settings import Settings


@runtime_checkable
class InputRefLike(Protocol):
    """Where a workflow wants a file: ``workflows.InputRef`` or anything with these fields."""

    @property
    def node_id(self) -> str: ...
    @property
    def input_name(self) -> str: ...
    @property
    def source(self) -> Any: ...


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
#: An input: an InputFile, an InputRef-like object, or (node_id, input_name, source[, filename]).
InputLike: TypeAlias = InputFile | InputRefLike | tuple[Any, ...]


def build_spec(
    item: Submittable,
    settings: Settings,
    *,
    params: Mapping[str, Any] | None = None,
    inputs: Iterable[InputLike] = (),
    labels: Mapping[str, str] | None = None,
    webhook_url: str | None = None,
    job_id: str | None = None,
    deadline_seconds: float | None = None,
    stall_timeout_seconds: float | None = None,
    required_outputs: Sequence[str] = (),
    storage_prefix: str = "",
    workflow_name: str | None = None,
    max_retries: int | None = None,
    enqueued_at: float | None = None,
) -> JobSpec:
    """A validated JobSpec (raises JobSpecError naming the field).

    A JobSpec ``item`` is returned as is (only ``enqueued_at`` is stamped); passing other options
    with it is a TypeError. For a prepared job, ``params`` update its parameter record and
    ``inputs`` add to its inputs. The deadline defaults to, and may not exceed,
    COMFYFARM_MAX_JOB_SECONDS.
    """
    now = time.time() if enqueued_at is None else enqueued_at
    if isinstance(item, JobSpec):
        if params or labels or webhook_url or job_id or deadline_seconds or tuple(inputs):
            raise TypeError("options that shape a job cannot be combined with a ready JobSpec")
        _check_deadline(item.deadline_seconds, settings)
        return JobSpec.from_dict({**item.to_dict(), "enqueued_at": now})
    if isinstance(item, Mapping):
        prompt = dict(item)
        record = dict(params or {})
        all_inputs = list(inputs)
        name = workflow_name or ""
    elif isinstance(item, PreparedLike):
        prompt = item.prompt
        record = {**dict(item.params or {}), **dict(params or {})}
        all_inputs = [*item.inputs, *inputs]
        name = workflow_name if workflow_name is not None else (item.workflow_name or "")
    else:
        raise TypeError(
            f"cannot submit a {type(item).__name__}: pass an API-format prompt dict, a "
            "workflows.PreparedJob or a JobSpec"
        )
    deadline = settings.max_job_seconds if deadline_seconds is None else deadline_seconds
    _check_deadline(deadline, settings)
    return JobSpec(
        job_id=job_id or new_job_id(),
        prompt=prompt,
        inputs=[to_input_file(entry, index) for index, entry in enumerate(all_inputs)],
        storage_prefix=storage_prefix,
        deadline_seconds=deadline,
        stall_timeout_seconds=(
            settings.stall_timeout if stall_timeout_seconds is None else stall_timeout_seconds
        ),
        required_outputs=list(required_outputs),
        webhook_url=webhook_url,
        labels=dict(labels or {}),
        params=record,
        workflow_name=name,
        enqueued_at=now,
        max_retries=settings.max_retries if max_retries is None else max_retries,
    )


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


def _check_deadline(deadline: float, settings: Settings) -> None:
    if isinstance(deadline, int | float) and deadline > settings.max_job_seconds:
        raise JobSpecError(
            field="deadline_seconds",
            reason=f"{deadline:g} s exceeds COMFYFARM_MAX_JOB_SECONDS={settings.max_job_seconds:g}"
            " (Redis would hand the still-running job to a second worker)",
        )
