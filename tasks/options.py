"""JobOptions: every option a caller may give a job, declared once.

``Farm.submit(workflow, **options)``, ``Farm.submit_many``, ``build_spec`` and the ``comfyfarm
submit`` command line all take their options from the fields of this one type, by name:

- the Python API forwards its keywords here (``JobOptions.from_keywords``: an unknown keyword is a
  TypeError naming it);
- ``build_spec`` copies every option that is also a ``JobSpec`` field into the spec by name, so
  the worker sees it (``queue`` and ``priority`` say where a job goes, not what it is: the
  publisher takes them);
- the command line makes one flag per field from its ``metadata`` (``flag``, ``kind``, ``help``).

Adding an option is therefore one field here (plus the same-named ``JobSpec`` field when the worker
must read it). ``None`` (or an empty sequence) always means "not given: the farm's default".
Values are validated where they land: spec fields by ``JobSpec``, ``queue``/``priority`` by the
publisher.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Sized
from dataclasses import dataclass, field, fields
from typing import Any, Literal, Protocol, TypeAlias, runtime_checkable

from comfyfarm.tasks.spec import InputFile

#: How the command line reads an option: one value (text / number / integer), a repeatable flag
#: (``pairs`` KEY=VALUE into a mapping, ``list``, ``input`` NODE.INPUT=SOURCE), or ``workflow``:
#: given by the workflow's own ``--param``/``--sweep`` flags, no flag of its own.
OptionKind: TypeAlias = Literal["text", "number", "integer", "pairs", "list", "input", "workflow"]

#: Options that say where a job goes rather than what it is (never part of the JobSpec).
DELIVERY_OPTIONS = frozenset({"queue", "priority"})


@runtime_checkable
class InputRefLike(Protocol):
    """Where a workflow wants a file: ``workflows.InputRef`` or anything with these fields."""

    @property
    def node_id(self) -> str: ...
    @property
    def input_name(self) -> str: ...
    @property
    def source(self) -> Any: ...


#: An input: an InputFile, an InputRef-like object, or (node_id, input_name, source[, filename]).
InputLike: TypeAlias = InputFile | InputRefLike | tuple[Any, ...]


def _option(kind: OptionKind, flag: str, help: str, *, metavar: str | None = None) -> Any:
    """A field that is unset by default, with what the command line needs to offer it."""
    default: Any = () if kind in ("list", "input") else None
    return field(default=default, metadata={"kind": kind, "flag": flag, "help": help,
                                            "metavar": metavar})  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class JobOptions:
    """How to run, file and deliver a job, apart from what it runs (the prompt or prepared job).

    For a prepared workflow job, ``params`` update its parameter record, ``inputs`` add to its
    inputs and ``workflow_name`` replaces its name. ``deadline_seconds``, ``stall_timeout_seconds``
    and ``max_retries`` default to the farm's settings.
    """

    params: Mapping[str, Any] | None = _option(
        "workflow", "--param", "the human parameter record shown in Flower and kept in the result"
    )
    inputs: Sequence[InputLike] = _option(
        "input", "--input", "a file to upload into a node's input (a path or URL)",
        metavar="NODE.INPUT=SOURCE",
    )  # fmt: skip
    labels: Mapping[str, str] | None = _option(
        "pairs", "--label", "a label kept with the job and its result", metavar="KEY=VALUE"
    )
    webhook_url: str | None = _option(
        "text", "--webhook", "URL that receives the signed result", metavar="URL"
    )
    job_id: str | None = _option(
        "text", "--job-id", "the job's id (default: a new one)", metavar="UUID"
    )
    deadline_seconds: float | None = _option(
        "number", "--deadline", "seconds per job (default COMFYFARM_MAX_JOB_SECONDS)",
        metavar="SECONDS",
    )  # fmt: skip
    stall_timeout_seconds: float | None = _option(
        "number", "--stall-timeout", "seconds without any ComfyUI event before reconciling",
        metavar="SECONDS",
    )  # fmt: skip
    required_outputs: Sequence[str] = _option(
        "list", "--required-output", "a node that must produce an output", metavar="NODE_ID"
    )
    storage_prefix: str | None = _option(
        "text", "--storage-prefix", "a relative folder in the output store", metavar="PATH"
    )
    workflow_name: str | None = _option(
        "text", "--workflow-name", "the name recorded for the job (default: the workflow's)",
        metavar="NAME",
    )  # fmt: skip
    max_retries: int | None = _option(
        "integer", "--max-retries", "retries on another worker (default COMFYFARM_MAX_RETRIES)",
        metavar="N",
    )  # fmt: skip
    models: Sequence[Any] = _option(
        "list", "--model", "a model the worker downloads into its models folder first "
        "(ModelFile or {folder, name, url, blake3?})", metavar="FOLDER/NAME=URL",
    )  # fmt: skip
    queue: str | None = _option(
        "text", "--queue", "a farm queue (default: the shared queue)", metavar="QUEUE"
    )
    priority: int | None = _option(
        "integer", "--priority", "0 (lowest) .. 9 (most urgent), default 5", metavar="0-9"
    )

    @classmethod
    def from_keywords(cls, keywords: Mapping[str, Any], *, caller: str) -> JobOptions:
        """The options named by a caller's keywords; an unknown one is a TypeError naming it."""
        unknown = sorted(set(keywords) - _NAME_SET)
        if unknown:
            raise TypeError(
                f"{caller}() got unknown option{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(map(repr, unknown))}; job options are: {', '.join(option_names())}"
            )
        return cls(**keywords)

    def given(self) -> dict[str, Any]:
        """The options set to something other than "not given" (None or empty)."""
        values = {name: getattr(self, name) for name in _NAMES}
        return {name: value for name, value in values.items() if not _unset(value)}


def _unset(value: object) -> bool:
    if value is None:
        return True
    return isinstance(value, Sized) and not isinstance(value, str) and len(value) == 0


_NAMES = tuple(spec.name for spec in fields(JobOptions))
_NAME_SET = frozenset(_NAMES)


def option_names() -> tuple[str, ...]:
    """The names of every job option, in declaration order."""
    return _NAMES
