"""JobResult: what a worker returns for every job it finishes (the RUN_JOB task's return value).

A JobResult is stored for succeeded, failed *and* cancelled jobs, so a producer always gets one
from ``Job.wait()``. It carries references (storage URIs, sizes, hashes), never file bytes.

An output's ``hash`` is written ``<algorithm>:<hex>``: ``blake3:<hex>`` by default (content
addressing as Comfy API v2 does it), ``sha256:<hex>`` from a store configured with
``COMFYFARM_OUTPUT_DIGEST=sha256``, empty with ``none``. Results written before the switch carry
a bare ``sha256`` hex field instead; they are read as ``hash = "sha256:<hex>"``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from comfyfarm.tasks import fields as f
from comfyfarm.tasks.errors import JobResultError

RESULT_VERSION = 1
JobStatus = Literal["succeeded", "failed", "cancelled"]
JOB_STATUSES: tuple[str, ...] = ("succeeded", "failed", "cancelled")
MAX_OUTPUTS = 10_000
MAX_ERROR_BYTES = 64 * 1024

E = JobResultError
_HASH = re.compile(r"(blake3|sha256):[0-9a-f]{64}")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, kw_only=True)
class OutputRecord:
    """One output of a job: a stored file (``uri`` set) or a value (``value`` set, ``uri`` None).

    ``kind`` is ComfyUI's output key (``images``, ``gifs``, ``audio``, ``text`` …); ``index`` the
    position within that node's list for that kind. ``hash`` is the file's digest
    (``blake3:<hex>``, ``sha256:<hex>``, or empty from a store kept without digests).
    ``animated``: ComfyUI flagged the file as animated (WEBP/PNG animation, video). ``cached``:
    ComfyUI did not run the node but served it from its cache (an identical earlier prompt), so
    the file is the one it made then.
    """

    node_id: str
    kind: str
    index: int
    filename: str
    uri: str | None
    bytes: int
    hash: str
    mime: str
    value: Any = None
    animated: bool = False
    cached: bool = False

    def __post_init__(self) -> None:
        f.text(E, "node_id", self.node_id, max_len=128)
        f.text(E, "kind", self.kind, max_len=128)
        f.integer(E, "index", self.index, minimum=0, maximum=1_000_000)
        f.text(E, "filename", self.filename, max_len=1024, empty=self.uri is None)
        f.integer(E, "bytes", self.bytes, minimum=0, maximum=2**62)
        f.text(E, "mime", self.mime, max_len=256, empty=True)
        if self.uri is not None:
            f.text(E, "uri", self.uri, max_len=4096)
            if not isinstance(self.hash, str) or (self.hash and not _HASH.fullmatch(self.hash)):
                f.fail(E, "hash", "must be blake3:<64 lowercase hex>, sha256:<64 lowercase hex>, "
                                  "or empty from a store kept without digests")  # fmt: skip
        else:
            f.text(E, "hash", self.hash, max_len=80, empty=True)
            f.json_size(E, "value", self.value, max_bytes=MAX_ERROR_BYTES)

    def to_dict(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "kind": self.kind,
            "index": self.index,
            "filename": self.filename,
            "uri": self.uri,
            "bytes": self.bytes,
            "hash": self.hash,
            "mime": self.mime,
            "value": self.value,
            "animated": self.animated,
            "cached": self.cached,
        }

    @classmethod
    def from_dict(cls, data: object) -> OutputRecord:
        d = f.mapping(E, "", data)
        return cls(
            node_id=f.required(E, d, "node_id"),
            kind=f.required(E, d, "kind"),
            index=f.required(E, d, "index"),
            filename=d.get("filename", ""),
            uri=d.get("uri"),
            bytes=d.get("bytes", 0),
            hash=_hash_of(d),
            mime=d.get("mime", ""),
            value=d.get("value"),
            animated=d.get("animated") is True,
            cached=d.get("cached") is True,
        )

    @property
    def sha256(self) -> str:
        """The SHA-256 hex digest when ``hash`` is one, else ``""`` (for older readers)."""
        algorithm, _, hexdigest = self.hash.partition(":")
        return hexdigest if algorithm == "sha256" else ""


def _hash_of(d: Mapping[str, Any]) -> Any:
    """``hash``, or from a result written before BLAKE3: its bare ``sha256`` hex as
    ``sha256:<hex>`` (checked like any hash)."""
    if "hash" in d:
        return d["hash"]
    legacy = d.get("sha256") or ""
    if isinstance(legacy, str) and _SHA256_HEX.fullmatch(legacy):
        return f"sha256:{legacy}"
    if legacy:
        f.fail(E, "sha256", "must be 64 lowercase hex digits")
    return ""


@dataclass(frozen=True, kw_only=True)
class Timings:
    """Wall-clock times (``time.time()``) and derived durations of one job.

    ``enqueued_at`` comes from the producer's clock and ``started_at`` from the worker's, so
    ``queue_seconds`` can be slightly off (even negative) when clocks disagree.

    The ``prompt_*`` and ``comfy_free_since`` times are ComfyUI's own (its ``execution_start``
    and final message, and the end of the prompt it ran just before this one); 0 when unknown.
    ``worker.idle_gap`` turns them into the pipeline idle gap.
    """

    enqueued_at: float
    started_at: float
    finished_at: float
    node_durations: dict[str, float] = field(default_factory=dict)
    queue_seconds: float = 0.0
    run_seconds: float = 0.0
    prompt_started_at: float = 0.0
    prompt_finished_at: float = 0.0
    comfy_free_since: float = 0.0

    def __post_init__(self) -> None:
        for name in ("enqueued_at", "started_at", "finished_at", *_COMFY_TIMES):
            f.number(E, name, getattr(self, name), minimum=0)
        f.number(E, "queue_seconds", self.queue_seconds)
        f.number(E, "run_seconds", self.run_seconds)
        durations = f.string_keys(E, "node_durations", self.node_durations)
        for node_id, seconds in durations.items():
            durations[node_id] = f.number(E, f"node_durations.{node_id}", seconds, minimum=0)
        object.__setattr__(self, "node_durations", durations)

    @classmethod
    def measure(
        cls,
        *,
        enqueued_at: float,
        started_at: float,
        finished_at: float,
        node_durations: dict[str, float] | None = None,
    ) -> Timings:
        """Timings with ``queue_seconds`` and ``run_seconds`` computed from the timestamps."""
        return cls(
            enqueued_at=enqueued_at,
            started_at=started_at,
            finished_at=finished_at,
            node_durations=dict(node_durations or {}),
            queue_seconds=started_at - enqueued_at if enqueued_at else 0.0,
            run_seconds=max(0.0, finished_at - started_at),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "enqueued_at": self.enqueued_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "node_durations": dict(self.node_durations),
            "queue_seconds": self.queue_seconds,
            "run_seconds": self.run_seconds,
            **{name: getattr(self, name) for name in _COMFY_TIMES},
        }

    @classmethod
    def from_dict(cls, data: object) -> Timings:
        d = f.mapping(E, "", data)
        return cls(
            enqueued_at=d.get("enqueued_at", 0.0),
            started_at=d.get("started_at", 0.0),
            finished_at=d.get("finished_at", 0.0),
            node_durations=d.get("node_durations", {}),
            queue_seconds=d.get("queue_seconds", 0.0),
            run_seconds=d.get("run_seconds", 0.0),
            **{name: d.get(name, 0.0) for name in _COMFY_TIMES},
        )


_COMFY_TIMES = ("prompt_started_at", "prompt_finished_at", "comfy_free_since")


@dataclass(frozen=True, kw_only=True)
class JobResult:
    """The outcome of one job.

    ``error`` is None for a success; otherwise ``{"type", "message", ...fields}`` — for a node
    that failed in ComfyUI that includes ``node_id``, ``node_type`` and the exception message.
    ``attempts`` counts executions including the one that produced this result.
    """

    version: int = RESULT_VERSION
    job_id: str
    status: str  # one of JOB_STATUSES (checked at runtime; JobStatus is the Literal type)
    outputs: list[OutputRecord] = field(default_factory=list)
    error: dict[str, Any] | None = None
    timings: Timings
    worker: str = ""
    comfy_url: str = ""
    attempts: int = 1
    params: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    #: URI of ``log.txt`` beside the outputs: what ComfyUI printed while the prompt ran. None
    #: when there is none; omitted from ``to_dict`` then, so older readers see no change.
    log: str | None = None

    def __post_init__(self) -> None:
        if self.version != RESULT_VERSION:
            f.fail(E, "version", f"unsupported version {self.version!r} (this code reads 1)")
        f.uuid_text(E, "job_id", self.job_id)
        if self.status not in JOB_STATUSES:
            f.fail(E, "status", f"must be one of {', '.join(JOB_STATUSES)}")
        outputs = f.list_of(E, "outputs", self.outputs, max_items=MAX_OUTPUTS)
        for index, item in enumerate(outputs):
            if not isinstance(item, OutputRecord):
                f.fail(E, f"outputs[{index}]", "must be an OutputRecord")
        object.__setattr__(self, "outputs", outputs)
        self._check_error()
        if not isinstance(self.timings, Timings):
            f.fail(E, "timings", "must be Timings")
        f.text(E, "worker", self.worker, max_len=256, empty=True)
        f.text(E, "comfy_url", self.comfy_url, max_len=2048, empty=True)
        f.integer(E, "attempts", self.attempts, minimum=0, maximum=1000)
        object.__setattr__(self, "params", f.string_keys(E, "params", self.params))
        object.__setattr__(self, "labels", f.labels(E, "labels", self.labels))
        if self.log is not None:
            f.text(E, "log", self.log, max_len=4096)

    def _check_error(self) -> None:
        if self.error is None:
            if self.status == "failed":
                f.fail(E, "error", "a failed job must say why")
            return
        if self.status == "succeeded":
            f.fail(E, "error", "a succeeded job has no error")
        error = f.string_keys(E, "error", self.error)
        f.text(E, "error.type", error.get("type"), max_len=256)
        f.text(E, "error.message", error.get("message"), max_len=MAX_ERROR_BYTES, empty=True)
        f.json_size(E, "error", error, max_bytes=MAX_ERROR_BYTES)
        object.__setattr__(self, "error", error)

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"

    def to_dict(self) -> dict[str, Any]:
        body = {
            "version": self.version,
            "job_id": self.job_id,
            "status": self.status,
            "outputs": [item.to_dict() for item in self.outputs],
            "error": self.error,
            "timings": self.timings.to_dict(),
            "worker": self.worker,
            "comfy_url": self.comfy_url,
            "attempts": self.attempts,
            "params": self.params,
            "labels": dict(self.labels),
        }
        if self.log is not None:
            body["log"] = self.log
        return body

    @classmethod
    def from_dict(cls, data: object) -> JobResult:
        """Validate and build; raises JobResultError naming the field."""
        d = f.mapping(E, "", data)
        version = d.get("version", RESULT_VERSION)
        if version != RESULT_VERSION:
            f.fail(E, "version", f"unsupported version {version!r} (this code reads 1)")
        outputs = []
        for index, item in enumerate(
            f.list_of(E, "outputs", d.get("outputs", []), max_items=MAX_OUTPUTS)
        ):
            with f.within(f"outputs[{index}]"):
                outputs.append(OutputRecord.from_dict(item))
        raw_timings = f.required(E, d, "timings")
        with f.within("timings"):
            timings = Timings.from_dict(raw_timings)
        return cls(
            job_id=f.required(E, d, "job_id"),
            status=f.required(E, d, "status"),
            outputs=outputs,
            error=d.get("error"),
            timings=timings,
            worker=d.get("worker", ""),
            comfy_url=d.get("comfy_url", ""),
            attempts=d.get("attempts", 1),
            params=d.get("params") or {},
            labels=d.get("labels") or {},
            log=d.get("log"),
        )
