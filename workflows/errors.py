"""Exceptions of the workflows package: one rooted tree, every error carries its problems.

::

    WorkflowError                 .problems: list[Problem]; str() = one problem per line
    ├── WorkflowFormatError       not JSON, unreadable, or neither API nor UI format
    ├── WorkflowNotFound          no such file and no such library workflow
    ├── SchemaUnavailable         node schemas (/object_info) could not be fetched or read
    ├── ConversionError           a UI workflow that cannot be converted to API format
    ├── ParameterError            a bad --param / --set / --sweep (name, address or value)
    │   └── InputFileError        an input file that is missing, unreadable, too big, not an image
    └── PromptInvalid             pre-flight validation found what ComfyUI would reject

All of them are permanent for the job at hand: retrying cannot help, the workflow or its
parameters must change.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from comfyfarm.workflows.problems import Problem, general


class WorkflowError(Exception):
    """Raised when a workflow cannot be loaded, converted, parameterised or validated."""

    def __init__(
        self, positional: Sequence[Problem] = (), /, *, problems: Sequence[Problem] = ()
    ) -> None:
        # ``WorkflowError(problems)`` and ``WorkflowError(problems=...)`` both work.
        self.problems: list[Problem] = list(problems or positional)
        super().__init__(self._render())

    def _render(self) -> str:
        return "\n".join(str(problem) for problem in self.problems) or type(self).__name__

    def __str__(self) -> str:
        return self._render()

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form: ``{"type", "message", "problems"}``."""
        return {
            "type": type(self).__name__,
            "message": str(self),
            "problems": [problem.to_dict() for problem in self.problems],
        }


class WorkflowFormatError(WorkflowError):
    """Raised when a file is not JSON, cannot be read, or is neither API nor UI format."""

    def __init__(
        self, *, source: str, reason: str, line: int | None = None, column: int | None = None
    ) -> None:
        self.source = source
        self.reason = reason
        self.line = line
        self.column = column
        where = f" (line {line}, column {column})" if line is not None else ""
        super().__init__(problems=[general("format", f"{source}{where}: {reason}")])


class WorkflowNotFound(WorkflowError):
    """Raised when a name is neither an existing file nor a workflow of the shipped library."""

    def __init__(self, *, name: str, available: Sequence[str], suggestion: str | None) -> None:
        self.name = name
        self.available = list(available)
        fix = f"did you mean {suggestion!r}?" if suggestion else None
        listing = ", ".join(self.available) or "none"
        message = f"no file {name!r} and no library workflow of that name (library: {listing})"
        super().__init__(problems=[general("not_found", message, fix)])


class SchemaUnavailable(WorkflowError):
    """Raised when node schemas cannot be fetched from a ComfyUI or read from a saved file."""

    def __init__(self, *, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        message = f"cannot read node schemas from {source}: {reason}"
        super().__init__(problems=[general("schema", message)])


class ConversionError(WorkflowError):
    """Raised when a UI-format workflow cannot be converted (unknown node types, broken graph)."""


class ParameterError(WorkflowError):
    """Raised when a parameter, override or sweep names nothing or carries an invalid value."""


class InputFileError(ParameterError):
    """Raised when an input file is missing, unreadable, too large or not an image."""

    def __init__(self, *, path: str, reason: str, fix: str | None = None) -> None:
        self.path = path
        self.reason = reason
        super().__init__(problems=[general("input_file", f"input file {path!r}: {reason}", fix)])


class PromptInvalid(WorkflowError):
    """Raised when pre-flight validation finds problems that ComfyUI would reject the prompt for."""
