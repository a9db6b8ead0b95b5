"""Errors of the contract: bad settings, bad queue names, payloads that do not validate.

```
ContractError (ValueError)
├── SettingsError(variable, value, reason)   a COMFYFARM_* variable cannot be used
├── QueueNameError(name, reason)             a worker or capability name cannot name a queue
└── PayloadError(field, reason)              a JSON payload does not validate
    ├── JobSpecError                         ... a JobSpec / InputFile
    └── JobResultError                       ... a JobResult / OutputRecord / Timings / JobProgress
```

Every error carries its data as keyword-only fields and has ``to_dict()`` (JSON-safe), so workers
can put it in a result and producers can print it.
"""

from __future__ import annotations

from typing import Any


class ContractError(ValueError):
    """Raised when something crossing the producer/worker contract is invalid."""

    def to_dict(self) -> dict[str, Any]:
        return {"type": type(self).__name__, "message": str(self), **self._fields()}

    def _fields(self) -> dict[str, Any]:
        return {}


class SettingsError(ContractError):
    """Raised when a COMFYFARM_* variable (or a Settings field) has a value that cannot be used."""

    def __init__(self, *, variable: str, value: str, reason: str) -> None:
        self.variable = variable
        self.value = value
        self.reason = reason
        super().__init__(f"{variable}={value!r}: {reason}")

    def _fields(self) -> dict[str, Any]:
        # The value is left out on purpose: it may be a secret.
        return {"variable": self.variable, "reason": self.reason}


class QueueNameError(ContractError):
    """Raised when a worker or capability name cannot be turned into a queue name."""

    def __init__(self, *, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"bad queue name part {name!r}: {reason}")

    def _fields(self) -> dict[str, Any]:
        return {"name": self.name, "reason": self.reason}


class PayloadError(ContractError):
    """Raised when a JSON payload does not validate; ``field`` is a dotted path into it."""

    def __init__(self, *, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}" if field else reason)

    def _fields(self) -> dict[str, Any]:
        return {"field": self.field, "reason": self.reason}


class JobSpecError(PayloadError):
    """Raised when a JobSpec or an InputFile does not validate (in the producer or the worker)."""


class JobResultError(PayloadError):
    """Raised when a JobResult, OutputRecord, Timings or JobProgress does not validate."""
