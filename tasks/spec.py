"""JobSpec: what a producer asks a worker to run (the only argument of the RUN_JOB task).

Limits (checked by the producer before sending and again by the worker on receipt):

=========================  ===========================================================
prompt                     API format (node id → {class_type, inputs}), ≤ 8 MiB of JSON,
                           links ``[node_id, output_index]`` must point at existing nodes
inputs                     ≤ 256 files; each node_id must be a node of the prompt
labels                     ≤ 32; name 1-64 of ``A-Z a-z 0-9 _ . - /``, value ≤ 256 chars
params                     JSON object ≤ 64 KiB (the human parameter record)
required_outputs           ≤ 256 node ids of the prompt
workflow_name              ≤ 200 chars;  storage_prefix: relative POSIX path ≤ 512 chars
webhook_url                http(s), ≤ 2048 chars
deadline / stall timeout   0 < seconds ≤ 7 days (producers also cap the deadline at
                           COMFYFARM_MAX_JOB_SECONDS)
max_retries                0..100
models                     ≤ 64 ModelFile (``tasks.model_files``): folder, name, http(s) url,
                           blake3?
=========================  ===========================================================

``from_dict`` ignores unknown keys (additions within a version stay compatible) and refuses any
other ``version``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, fields
from typing import Any

from comfyfarm.tasks import fields as f
from comfyfarm.tasks.errors import JobSpecError
from comfyfarm.tasks.model_files import ModelFile, model_files

SPEC_VERSION = 1
MAX_PROMPT_BYTES = 8 * 1024 * 1024
MAX_PARAMS_BYTES = 64 * 1024
MAX_INPUTS = 256
MAX_REQUIRED_OUTPUTS = 256
MAX_SECONDS = 7 * 24 * 3600.0
INPUT_SCHEMES = ("http", "https", "file", "s3", "memory")

E = JobSpecError


def new_job_id() -> str:
    """A fresh job id: a canonical lowercase UUID, also used as the ComfyUI prompt id."""
    return str(uuid.uuid4())


@dataclass(frozen=True, kw_only=True)
class InputFile:
    """A file the worker uploads to its ComfyUI before queueing the prompt.

    ``source``: an absolute path on shared storage, an http(s) URL, or a storage URI
    (``file://``, ``s3://``, ``memory://``). The worker uploads it as ``filename`` (in a per-job
    subfolder) and sets ``prompt[node_id]["inputs"][input_name]`` to the uploaded name.
    """

    node_id: str
    input_name: str
    source: str
    filename: str

    def __post_init__(self) -> None:
        f.text(E, "node_id", self.node_id, max_len=128)
        f.text(E, "input_name", self.input_name, max_len=256)
        f.filename(E, "filename", self.filename)
        source = f.text(E, "source", self.source, max_len=4096)
        if "://" in source:
            f.url(E, "source", source, schemes=INPUT_SCHEMES, max_len=4096)
        elif not source.startswith("/"):
            f.fail(E, "source", "must be an absolute path, an http(s) URL or a storage URI")

    def to_dict(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "input_name": self.input_name,
            "source": self.source,
            "filename": self.filename,
        }

    @classmethod
    def from_dict(cls, data: object) -> InputFile:
        d = f.mapping(E, "", data)
        return cls(
            node_id=f.required(E, d, "node_id"),
            input_name=f.required(E, d, "input_name"),
            source=f.required(E, d, "source"),
            filename=f.required(E, d, "filename"),
        )


@dataclass(frozen=True, kw_only=True)
class JobSpec:
    """One job: an API-format prompt plus everything the worker needs to run and file it.

    ``job_id`` is also the Celery task id and the ComfyUI prompt id. ``to_dict()`` shares the
    ``prompt`` and ``params`` objects (no deep copy): treat a JobSpec as immutable.
    """

    version: int = SPEC_VERSION
    job_id: str
    prompt: dict[str, Any]
    inputs: list[InputFile] = field(default_factory=list)
    storage_prefix: str = ""
    deadline_seconds: float = 1800.0
    stall_timeout_seconds: float = 120.0
    required_outputs: list[str] = field(default_factory=list)
    webhook_url: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    workflow_name: str = ""
    enqueued_at: float = 0.0
    max_retries: int = 3
    models: list[ModelFile] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.version != SPEC_VERSION:
            f.fail(E, "version", f"unsupported version {self.version!r} (this code reads 1)")
        f.uuid_text(E, "job_id", self.job_id)
        check_prompt(self.prompt)
        inputs = f.list_of(E, "inputs", self.inputs, max_items=MAX_INPUTS)
        for index, item in enumerate(inputs):
            if not isinstance(item, InputFile):
                f.fail(E, f"inputs[{index}]", "must be an InputFile")
            if item.node_id not in self.prompt:
                f.fail(E, f"inputs[{index}].node_id", f"node {item.node_id!r} is not in the prompt")
        object.__setattr__(self, "inputs", inputs)
        f.relative_path(E, "storage_prefix", self.storage_prefix, max_len=512)
        f.number(E, "deadline_seconds", self.deadline_seconds, positive=True, maximum=MAX_SECONDS)
        f.number(
            E, "stall_timeout_seconds", self.stall_timeout_seconds, positive=True,
            maximum=MAX_SECONDS,
        )  # fmt: skip
        required = f.list_of(E, "required_outputs", self.required_outputs,
                             max_items=MAX_REQUIRED_OUTPUTS)  # fmt: skip
        for index, node_id in enumerate(required):
            if not isinstance(node_id, str) or node_id not in self.prompt:
                f.fail(E, f"required_outputs[{index}]", f"{node_id!r} is not a node of the prompt")
        object.__setattr__(self, "required_outputs", required)
        if self.webhook_url is not None:
            f.url(E, "webhook_url", self.webhook_url, schemes=("http", "https"))
        object.__setattr__(self, "labels", f.labels(E, "labels", self.labels))
        params = f.string_keys(E, "params", self.params)
        f.json_size(E, "params", params, max_bytes=MAX_PARAMS_BYTES)
        object.__setattr__(self, "params", params)
        f.text(E, "workflow_name", self.workflow_name, max_len=200, empty=True)
        f.number(E, "enqueued_at", self.enqueued_at, minimum=0)
        f.integer(E, "max_retries", self.max_retries, minimum=0, maximum=100)
        object.__setattr__(self, "models", model_files(self.models))

    def to_dict(self) -> dict[str, Any]:
        body = {name: getattr(self, name) for name in _FIELD_NAMES}
        body["inputs"] = [item.to_dict() for item in self.inputs]
        body["required_outputs"] = list(self.required_outputs)
        body["labels"] = dict(self.labels)
        body["models"] = [item.to_dict() for item in self.models]
        return body

    @classmethod
    def from_dict(cls, data: object) -> JobSpec:
        """Validate and build; raises JobSpecError naming the field (e.g. ``inputs[0].source``)."""
        d = f.mapping(E, "", data)
        version = d.get("version", SPEC_VERSION)
        if version != SPEC_VERSION:
            f.fail(E, "version", f"unsupported version {version!r} (this code reads 1)")
        raw_inputs = f.list_of(E, "inputs", d.get("inputs", []), max_items=MAX_INPUTS)
        inputs = []
        for index, item in enumerate(raw_inputs):
            with f.within(f"inputs[{index}]"):
                inputs.append(InputFile.from_dict(item))
        optional: dict[str, Any] = {
            key: d[key] for key in _OPTIONAL_KEYS if key in d and d[key] is not None
        }
        return cls(
            job_id=f.required(E, d, "job_id"),
            prompt=f.required(E, d, "prompt"),
            inputs=inputs,
            webhook_url=d.get("webhook_url"),
            **optional,
        )


_FIELD_NAMES = tuple(spec.name for spec in fields(JobSpec))
# Every field read by name; those below are given explicitly (version checked, inputs parsed, a
# null webhook_url kept).
_OPTIONAL_KEYS = tuple(
    spec.name
    for spec in fields(JobSpec)
    if spec.name not in ("version", "job_id", "prompt", "inputs", "webhook_url")
)


def check_prompt(value: object) -> None:
    """Check the shape of an API-format prompt; raises JobSpecError naming the node and input."""
    prompt = f.mapping(E, "prompt", value)
    if not prompt:
        f.fail(E, "prompt", "has no nodes")
    for node_id, node in prompt.items():
        if not isinstance(node_id, str) or not node_id or len(node_id) > 128:
            f.fail(E, "prompt", f"node id {node_id!r} must be a string of 1-128 characters")
        where = f"prompt.{node_id}"
        node = f.mapping(E, where, node)
        for key in ("class_type", "inputs"):
            if key not in node:
                f.fail(E, f"{where}.{key}", "missing")
        f.text(E, f"{where}.class_type", node["class_type"], max_len=256)
        inputs = f.mapping(E, f"{where}.inputs", node["inputs"])
        for name, item in inputs.items():
            if not isinstance(name, str):
                f.fail(E, f"{where}.inputs", f"input name {name!r} must be a string")
            if _is_link(item) and item[0] not in prompt:
                f.fail(E, f"{where}.inputs.{name}",
                       f"links to node {item[0]!r}, which is not in the prompt")  # fmt: skip
    f.json_size(E, "prompt", prompt, max_bytes=MAX_PROMPT_BYTES)


def _is_link(value: object) -> bool:
    """ComfyUI treats any ``[str, int]`` input value as a link to another node's output."""
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )
