"""Errors of the ComfyUI client: one rooted tree, retryable versus permanent as a type.

::

    ComfyError
    ├── ComfyRetryable                 the same job may succeed later or on another ComfyUI
    │   ├── ComfyUnavailable           refused/reset/timed out, garbage answers, socket gone
    │   ├── ComfyServerError           HTTP 5xx
    │   └── PromptLost                 ComfyUI no longer knows the prompt (it restarted)
    └── ComfyPermanent                 running the same job again gives the same answer
        ├── PromptRejected             validation failed (carries NodeError list)
        ├── ExecutionFailed            a node raised while executing
        ├── ExecutionInterrupted       the prompt was interrupted
        ├── PromptTimeout              deadline passed, or the prompt stalled
        ├── UnsafeOutputPath           a file name from ComfyUI would escape its folder
        ├── ResponseTooLarge           an answer or output exceeds its size limit
        └── ComfyRequestError          any other 4xx (missing /view file, unknown model folder)

Every error keeps its data in keyword-only fields and has ``to_dict()`` (JSON-safe), so logs,
Flower and job results can show it without parsing the message.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

TimeoutKind = Literal["deadline", "stall"]


@dataclass(frozen=True, kw_only=True)
class NodeError:
    """One validation problem of one node input, as ComfyUI reported it in ``node_errors``."""

    node_id: str
    class_type: str
    error_type: str
    message: str
    details: str
    input_name: str | None = None
    received_value: Any = None
    extra_info: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        where = f"node {self.node_id} ({self.class_type})"
        if self.input_name:
            where += f" input {self.input_name!r}"
        text = f"{where}: {self.error_type}: {self.message}"
        return f"{text}: {self.details}" if self.details else text

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rebuild(cls: type[ComfyError], fields: dict[str, Any]) -> ComfyError:
    return cls(**fields)


class ComfyError(Exception):
    """Root of every error the ComfyUI client raises."""

    fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, message: str) -> None:
        super().__init__(message)

    def field_values(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.fields}

    def to_dict(self) -> dict[str, Any]:
        """``{"type": class name, "message": str(self), **fields}``, safe for ``json.dumps``."""
        data: dict[str, Any] = {"type": type(self).__name__, "message": str(self)}
        for name, value in self.field_values().items():
            if isinstance(value, list):
                value = [item.to_dict() if isinstance(item, NodeError) else item for item in value]
            data[name] = value
        return data

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructors break the default ``cls(*args)`` of copy/pickle-like tools.
        if not self.fields:
            return (type(self), self.args)
        return (_rebuild, (type(self), self.field_values()))


class ComfyRetryable(ComfyError):
    """Raised when the failure is about this ComfyUI right now, not about the job."""


class ComfyPermanent(ComfyError):
    """Raised when the job itself failed; running it again gives the same result."""


class ComfyUnavailable(ComfyRetryable):
    """Raised when ComfyUI cannot be reached, answers garbage, or its WebSocket dropped for good."""

    fields = ("url", "reason")

    def __init__(self, *, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"ComfyUI at {url} unavailable: {reason}")


class ComfyServerError(ComfyRetryable):
    """Raised when ComfyUI answers with a 5xx status."""

    fields = ("url", "status", "body")

    def __init__(self, *, url: str, status: int, body: str) -> None:
        self.url = url
        self.status = status
        self.body = body
        snippet = body.strip().replace("\n", " ")[:200]
        super().__init__(f"ComfyUI server error {status} from {url}: {snippet}")


class PromptLost(ComfyRetryable):
    """Raised when ComfyUI lost a prompt it accepted: not queued, not running, not in history."""

    fields = ("prompt_id",)

    def __init__(self, *, prompt_id: str) -> None:
        self.prompt_id = prompt_id
        super().__init__(
            f"prompt {prompt_id} is lost: ComfyUI has it neither queued, running nor in history "
            "(it probably restarted)"
        )


class PromptRejected(ComfyPermanent):
    """Raised when ComfyUI refuses a prompt at validation (400, or 200 with ``node_errors``)."""

    fields = ("error_type", "message", "details", "node_errors", "partial")

    def __init__(
        self,
        *,
        error_type: str,
        message: str,
        details: str,
        node_errors: list[NodeError],
        partial: bool,
    ) -> None:
        self.error_type = error_type
        self.message = message
        self.details = details
        self.node_errors = list(node_errors)
        self.partial = partial
        head = f"prompt rejected ({error_type}): {message}"
        if details and not node_errors:
            head += f": {details}"
        if partial:
            head += " [some outputs were valid; treated as rejected]"
        super().__init__("\n  ".join([head, *(str(error) for error in node_errors)]))

    def to_dict(self) -> dict[str, Any]:
        """As ``ComfyError.to_dict``, but ``message`` is the whole text with every node error
        (node, class, input, message); ComfyUI's own one-liner ("Prompt outputs failed
        validation") is kept as ``comfy_message``."""
        data = super().to_dict()
        data["comfy_message"] = self.message
        data["message"] = str(self)
        return data


class ExecutionFailed(ComfyPermanent):
    """Raised when a node raised an exception while the prompt executed (``execution_error``)."""

    fields = (
        "prompt_id",
        "node_id",
        "node_type",
        "exception_type",
        "exception_message",
        "traceback",
    )

    def __init__(
        self,
        *,
        prompt_id: str,
        node_id: str | None,
        node_type: str | None,
        exception_type: str,
        exception_message: str,
        traceback: list[str],
    ) -> None:
        self.prompt_id = prompt_id
        self.node_id = node_id
        self.node_type = node_type
        self.exception_type = exception_type
        self.exception_message = exception_message
        self.traceback = list(traceback)
        super().__init__(
            f"prompt {prompt_id} failed in node {node_id} ({node_type}): "
            f"{exception_type}: {exception_message.strip()}"
        )


class ExecutionInterrupted(ComfyPermanent):
    """Raised when the prompt was interrupted (``execution_interrupted``)."""

    fields = ("prompt_id", "node_id", "node_type")

    def __init__(self, *, prompt_id: str, node_id: str | None, node_type: str | None) -> None:
        self.prompt_id = prompt_id
        self.node_id = node_id
        self.node_type = node_type
        super().__init__(f"prompt {prompt_id} was interrupted at node {node_id} ({node_type})")


class PromptTimeout(ComfyPermanent):
    """Raised when a prompt passed its deadline, or stayed silent while running for too long."""

    fields = ("prompt_id", "kind", "seconds")

    def __init__(self, *, prompt_id: str, kind: TimeoutKind, seconds: float) -> None:
        self.prompt_id = prompt_id
        self.kind: TimeoutKind = kind
        self.seconds = seconds
        what = "passed its deadline" if kind == "deadline" else "stalled (no events)"
        super().__init__(f"prompt {prompt_id} {what} after {seconds:.1f} s")


class UnsafeOutputPath(ComfyPermanent):
    """Raised when a file name or subfolder (from ComfyUI, untrusted) would escape its folder."""

    fields = ("filename", "subfolder", "reason")

    def __init__(self, *, filename: str, subfolder: str, reason: str) -> None:
        self.filename = filename
        self.subfolder = subfolder
        self.reason = reason
        super().__init__(f"unsafe output path {subfolder!r}/{filename!r}: {reason}")


class ResponseTooLarge(ComfyPermanent):
    """Raised when ComfyUI sends more than a limit allows (a JSON answer, a ``/view`` file)."""

    fields = ("url", "route", "limit", "setting")

    def __init__(self, *, url: str, route: str, limit: int, setting: str) -> None:
        self.url = url
        self.route = route
        self.limit = limit
        self.setting = setting
        super().__init__(
            f"ComfyUI at {url} sent more than {limit} bytes for {route} (limit {setting})"
        )


class ComfyRequestError(ComfyPermanent):
    """Raised when ComfyUI answers an unexpected 4xx (missing file on /view, unknown folder...)."""

    fields = ("url", "status", "body")

    def __init__(self, *, url: str, status: int, body: str) -> None:
        self.url = url
        self.status = status
        self.body = body
        snippet = body.strip().replace("\n", " ")[:200]
        super().__init__(
            f"ComfyUI refused {url} with {status}" + (f": {snippet}" if snippet else "")
        )
