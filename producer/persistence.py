"""Whether the broker keeps the farm's queues across its own restart, for ``comfyfarm status``.

Every queued job, unacknowledged delivery, lease and result lives in Redis. A Redis without the
append-only file (``appendonly no``) loses all writes since its last RDB snapshot when it restarts
— queued jobs are gone, running ones are never re-delivered — and one with neither AOF nor RDB
(``save ""``) loses everything. ``broker_persistence`` asks the broker (``CONFIG GET``); managed
services often disable or rename ``CONFIG`` (or an ACL forbids it), and then the answer is
"unknown", never an error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Persistence:
    """What ``CONFIG GET`` said: ``appendonly`` (True/False, None when it could not be read) and
    the RDB ``save`` schedule ("" = no snapshots)."""

    appendonly: bool | None
    save: str | None = None

    @property
    def warning(self) -> str | None:
        """A sentence for the operator when a broker restart would lose jobs, else None."""
        if self.appendonly is None or self.appendonly:
            return None
        if self.save:
            return (
                "the broker runs without AOF persistence (appendonly no): a Redis restart loses "
                f"every job queued or running since its last RDB snapshot (save {self.save!r}); "
                "set appendonly yes"
            )
        return (
            "the broker runs without persistence (appendonly no, no RDB snapshots): a Redis "
            "restart loses every queued and running job; set appendonly yes"
        )


def broker_persistence(client: redis.Redis) -> Persistence:
    """The broker's persistence settings; ``appendonly`` None if ``CONFIG`` is not allowed."""
    try:
        appendonly = client.config_get("appendonly").get("appendonly")
        save = client.config_get("save").get("save")
    except redis.ResponseError as exc:  # CONFIG disabled, renamed or forbidden by an ACL
        log.debug("cannot read the broker's persistence settings: %s", exc)
        return Persistence(appendonly=None)
    if appendonly is None:
        return Persistence(appendonly=None)
    return Persistence(appendonly=_text(appendonly) == "yes", save=_text(save or ""))


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
