"""``POST /api/v2/jobs``: read the body, validate the workflow, enqueue it into the farm.

```
body ──parse_submission──▶ Submission ──Submitter.prepare──▶ API prompt ──(asset references
        422 invalid_request                 422 workflow_format_ui   resolved by the route)──▶
        422 metadata_invalid                422 invalid_inputs       Submitter.submit ──▶ JobRecord
                                                          422 invalid_workflow (every problem)
                                                          422 missing_asset
                                                          429 queue_full (+ Retry-After)
```

Documented extensions beyond the contract (a stock client sends none of them): ``webhook_url``
(the farm's signed, retried completion webhook), ``priority`` (0 lowest … 9 most urgent, default 5),
``convert_ui: true`` (convert a UI export with the live schemas instead of refusing it) and
``inputs`` (named parameters: ``{"seed": 7, "prompt": "a cat", "6.text": "…"}`` set into the
workflow before validation — ``workflows.apply_inputs``, which never reads a local file or fetches
a URL whatever the value; an unknown name or a value of the wrong type is ``422 invalid_inputs``
naming the parameter and the node input it targets). ``extra_data.api_key_comfy_org`` is refused:
the farm would have to carry the key through Redis, and secrets never go there.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from comfyfarm.gateway.errors import ApiError, invalid_request
from comfyfarm.gateway.job_records import JobRecord
from comfyfarm.gateway.publishing import PublishBatcher
from comfyfarm.gateway.schemas import SchemaCache, place
from comfyfarm.producer import Farm, build_spec
from comfyfarm.tasks.errors import JobSpecError
from comfyfarm.tasks.models import MAX_PROMPT_BYTES, InputFile, new_job_id
from comfyfarm.tasks.routing import queue_keys
from comfyfarm.tasks.spec import check_prompt
from comfyfarm.workflows import (
    ConversionError,
    Problem,
    WorkflowFormatError,
    apply_inputs,
    convert_ui_to_api,
    detect_format,
)

MAX_BODY_BYTES = MAX_PROMPT_BYTES + 256 * 1024
MAX_METADATA_PAIRS = 16
MAX_INPUTS = 64
MAX_INPUT_NAME = 200
DEPTH_SECONDS = 0.25
WORKFLOW_NAME = "api-v2"
_LABEL_KEY = re.compile(r"[A-Za-z0-9_.\-/]{1,64}")
_KNOWN_EXTRA_DATA = frozenset({"api_key_comfy_org"})


@dataclass(frozen=True)
class Submission:
    workflow: dict[str, Any]
    metadata: dict[str, str] = field(default_factory=dict)
    webhook_url: str | None = None
    priority: int | None = None
    convert_ui: bool = False
    inputs: dict[str, Any] = field(default_factory=dict)


def parse_submission(body: Any) -> Submission:
    """A Submission from the untrusted JSON body; ApiError 422 saying which field is wrong."""
    if not isinstance(body, dict):
        raise invalid_request("the body must be a JSON object with a 'workflow' field")
    workflow = body.get("workflow")
    if not isinstance(workflow, dict):
        raise invalid_request("'workflow' is required and must be a JSON object", field="workflow")
    _check_extra_data(body.get("extra_data"))
    webhook_url = body.get("webhook_url")
    if webhook_url is not None and not isinstance(webhook_url, str):
        raise invalid_request("'webhook_url' must be an http(s) URL", field="webhook_url")
    priority = body.get("priority")
    if priority is not None and (
        isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 9
    ):
        raise invalid_request("'priority' must be a whole number 0-9", field="priority")
    convert_ui = body.get("convert_ui", False)
    if not isinstance(convert_ui, bool):
        raise invalid_request("'convert_ui' must be true or false", field="convert_ui")
    return Submission(
        workflow=workflow,
        metadata=parse_metadata(body.get("metadata")),
        webhook_url=webhook_url,
        priority=priority,
        convert_ui=convert_ui,
        inputs=parse_inputs(body.get("inputs")),
    )


def parse_inputs(raw: Any) -> dict[str, Any]:
    """The named-parameter extension's object (its values are checked when applied)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise invalid_request(
            "'inputs' must be an object of parameter names (or NODE.INPUT addresses) to values",
            field="inputs",
        )
    if len(raw) > MAX_INPUTS:
        raise invalid_request(f"at most {MAX_INPUTS} inputs ({len(raw)} given)", field="inputs")
    for name in raw:
        if not name or len(name) > MAX_INPUT_NAME:
            raise invalid_request(f"an input name is 1-{MAX_INPUT_NAME} characters", field="inputs")
    return dict(raw)


def inputs_rejected(problems: dict[str, list[Problem]]) -> ApiError:
    """422 ``invalid_inputs``: per parameter name, what is wrong and which node input it set."""
    by_name = {
        name: [
            {"node_id": p.node_id, "field": p.input_name, "class_type": p.class_type,
             "reason": p.kind, "message": p.message, "fix": p.fix}
            for p in found
        ]
        for name, found in problems.items()
    }  # fmt: skip
    name, found = next(iter(problems.items()))
    first = found[0]
    where = f" (node {first.node_id} input {first.input_name})" if first.node_id else ""
    more = f" (and {len(problems) - 1} more parameters)" if len(problems) > 1 else ""
    return ApiError(
        422,
        "invalid_inputs",
        f"inputs.{name}{where}: {first.message}{more}",
        details={"field": "inputs", "inputs": by_name},
    )


def parse_metadata(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _metadata_invalid("'metadata' must be an object of string labels")
    if len(raw) > MAX_METADATA_PAIRS:
        raise _metadata_invalid(f"at most {MAX_METADATA_PAIRS} metadata pairs ({len(raw)} given)")
    for key, value in raw.items():
        if not _LABEL_KEY.fullmatch(key):
            raise _metadata_invalid(
                f"metadata key {key[:80]!r} must be 1-64 of A-Z a-z 0-9 _ . - /"
            )
        if not isinstance(value, str) or len(value) > 256:
            raise _metadata_invalid(
                f"metadata value of {key!r} must be a string of ≤ 256 characters"
            )
    return dict(raw)


def _metadata_invalid(message: str) -> ApiError:
    return ApiError(422, "metadata_invalid", message, details={"field": "metadata"})


def _check_extra_data(extra: Any) -> None:
    if extra is None:
        return
    if not isinstance(extra, dict):
        raise invalid_request("'extra_data' must be an object", field="extra_data")
    unknown = sorted(set(extra) - _KNOWN_EXTRA_DATA)
    if unknown:
        raise invalid_request(
            f"'extra_data' accepts only api_key_comfy_org; unknown: {', '.join(unknown)[:200]}",
            field="extra_data",
        )
    if "api_key_comfy_org" in extra:
        raise invalid_request(
            "partner (API) node keys are not supported by this farm: it never carries secrets "
            "through its queue",
            field="extra_data.api_key_comfy_org",
        )


def problems_details(problems: list[Problem]) -> dict[str, Any]:
    """``node_errors`` (node id → every problem of that node) and the problems of no node."""
    node_errors: dict[str, list[dict[str, Any]]] = {}
    general: list[dict[str, Any]] = []
    for problem in problems:
        entry = {
            "field": problem.input_name,
            "reason": problem.kind,
            "message": problem.message,
            "class_type": problem.class_type,
            "fix": problem.fix,
        }
        if problem.node_id is None:
            general.append(entry)
        else:
            node_errors.setdefault(problem.node_id, []).append(entry)
    return {"node_errors": node_errors, "errors": general}


def invalid_workflow(problems: list[Problem]) -> ApiError:
    first = str(problems[0]) if problems else "the workflow is not valid"
    more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
    return ApiError(422, "invalid_workflow", first + more, details=problems_details(problems))


def _spec_error(exc: JobSpecError) -> ApiError:
    return ApiError(
        422, "invalid_workflow", f"{exc.field}: {exc.reason}",
        details={"node_errors": {}, "errors": [{"field": exc.field, "reason": exc.reason}]},
    )  # fmt: skip


class Submitter:
    """Validates and enqueues submissions into one farm."""

    def __init__(
        self,
        farm: Farm,
        client: aioredis.Redis,
        schemas: SchemaCache,
        *,
        max_queue_depth: int,
        retry_after: int,
    ) -> None:
        self.farm = farm
        self.client = client
        self.schemas = schemas
        self.max_queue_depth = max_queue_depth
        self.retry_after = retry_after
        self.prefix = farm.settings.key_prefix
        self.publisher = PublishBatcher(farm, client)
        self._depths: dict[str, tuple[float, int]] = {}  # queue → (read at, depth since)
        self._reading: dict[str, asyncio.Future[None]] = {}  # queue → its depth read under way

    async def prepare(self, submission: Submission) -> tuple[dict[str, Any], dict[str, Any]]:
        """The API-format prompt (a UI export converted when asked for) with the submission's
        named ``inputs`` set, and the record of what each set (ApiError 422 otherwise)."""
        prompt = await self._api_prompt(submission)
        if not submission.inputs:
            return prompt, {}
        try:
            check_prompt(prompt)  # the shape apply_inputs relies on
        except JobSpecError as exc:
            raise _spec_error(exc) from None
        source = await self.schemas.any_source()
        applied = await asyncio.to_thread(apply_inputs, prompt, submission.inputs, schema=source)
        if applied.problems:
            raise inputs_rejected(applied.problems)
        return applied.prompt, applied.params

    async def submit(
        self,
        tenant: str,
        submission: Submission,
        prompt: dict[str, Any],
        *,
        job_id: str | None = None,
        params: dict[str, Any] | None = None,
        inputs: list[InputFile] | None = None,
        blobs: list[str] | None = None,
    ) -> JobRecord:
        """Validate and enqueue ``prompt`` (from ``prepare``, asset references resolved); the
        returned record is the job. ApiError for a definitive refusal (nothing was enqueued);
        other exceptions mean the outcome is unknown."""
        files = list(inputs or [])
        try:
            # The spec first: building it checks the prompt's structure (nodes are nodes, links
            # lead somewhere, JSON-safe, bounded) once, which the validation below relies on.
            spec = build_spec(
                prompt,
                self.farm.settings,
                job_id=job_id or new_job_id(),
                inputs=files,
                params=params or {},
                labels=submission.metadata,
                webhook_url=submission.webhook_url,
                workflow_name=WORKFLOW_NAME,
            )
        except JobSpecError as exc:
            raise _spec_error(exc) from None
        groups = await self.schemas.groups()
        uploads = {(item.node_id, item.input_name) for item in files}
        placement = place(spec.prompt, groups, uploads)
        if placement.problems:
            raise invalid_workflow(placement.problems)
        queue = placement.queue or await self.schemas.default_queue(spec.prompt)
        await self._check_depth(queue)
        record = JobRecord(spec.job_id, tenant, spec.enqueued_at or time.time(),
                           submission.metadata, spec.prompt, queue, tuple(blobs or ()))  # fmt: skip
        await self.publisher.send(spec, record, queue=queue, priority=submission.priority)
        return record

    async def _api_prompt(self, submission: Submission) -> dict[str, Any]:
        workflow = submission.workflow
        try:
            kind = detect_format(workflow, source="workflow")
        except WorkflowFormatError as exc:
            raise ApiError(
                422, "invalid_workflow", str(exc),
                details={"node_errors": {}, "errors": [{"reason": "format", "message": str(exc)}]},
            ) from None  # fmt: skip
        if kind == "api":
            return workflow
        if not submission.convert_ui:
            raise ApiError(
                422,
                "workflow_format_ui",
                "the workflow is a UI export (nodes/links): submit the API-format graph "
                "('Export (API)' in ComfyUI), or send \"convert_ui\": true to have the farm "
                "convert it",
            )
        source = await self.schemas.any_source()
        if source is None:
            raise ApiError(
                422, "invalid_workflow",
                "cannot convert a UI workflow: no worker has published its node schemas yet",
            )  # fmt: skip
        try:
            return await asyncio.to_thread(convert_ui_to_api, workflow, source)
        except ConversionError as exc:
            raise invalid_workflow(exc.problems) from None

    async def _read_depth(self, queue: str) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            for key in queue_keys(self.prefix, queue).values():
                pipe.llen(key)
            depth = sum(int(n) for n in await pipe.execute())
        self._depths[queue] = (time.monotonic(), depth)

    async def _check_depth(self, queue: str) -> None:
        """429 past the limit. The depth is read at most every ``DEPTH_SECONDS`` and counted up
        by this gateway's own submissions in between (a round trip saved per submit; several
        gateways may overshoot the limit by what they accept within that time)."""
        read_at, depth = self._depths.get(queue, (float("-inf"), 0))
        if time.monotonic() - read_at >= DEPTH_SECONDS:
            # One read at a time per queue: the submissions that arrive meanwhile share it
            # (else every concurrent submission found the depth stale and read it too).
            reading = self._reading.get(queue)
            if reading is None:
                reading = asyncio.ensure_future(self._read_depth(queue))
                self._reading[queue] = reading
                reading.add_done_callback(lambda _: self._reading.pop(queue, None))
            await asyncio.shield(reading)
            read_at, depth = self._depths[queue]
        if depth < self.max_queue_depth:
            self._depths[queue] = (read_at, depth + 1)
            return
        self._depths[queue] = (read_at, depth)
        if depth >= self.max_queue_depth:
            raise ApiError(
                429,
                "queue_full",
                f"the farm's queue holds {depth} jobs (limit {self.max_queue_depth}): retry later",
                headers={"Retry-After": str(self.retry_after)},
            )
