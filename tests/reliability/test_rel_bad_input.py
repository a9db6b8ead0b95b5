"""Every bad input is refused with a message that names what is wrong and where.

One table: each case runs a bad input through the API that meets it first (workflow loading
and validation, ``Farm.submit``, the JobSpec decoder a worker runs on every message, the
worker's input reader, the ComfyUI client, the job runner against a real simulator process,
``Job.result``). Each must raise the expected error type whose message contains the expected
text; and nothing may be written outside the storage root.

Documented limits (``tasks.spec``, ``workflows.inputs``): prompt ≤ 8 MiB of JSON, params
≤ 64 KiB, ≤ 256 input files, labels ≤ 32 (value ≤ 256 chars), workflow name ≤ 200 chars,
input files ≤ 100 MiB (ComfyUI's default upload limit), job ids canonical UUIDs.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from farm_kit import png_bytes
from rel_kit import arm

from comfyfarm.comfy.client import ComfyClient
from comfyfarm.comfy.errors import ComfyUnavailable, UnsafeOutputPath
from comfyfarm.producer import Farm
from comfyfarm.services import SimulatorProcess
from comfyfarm.storage import open_store
from comfyfarm.tasks.errors import JobSpecError
from comfyfarm.tasks.keyspace import celery_result_key
from comfyfarm.tasks.models import InputFile, JobSpec, new_job_id
from comfyfarm.tasks.settings import Settings
from comfyfarm.worker.inputs import InputFileError as WorkerInputError
from comfyfarm.worker.inputs import read_input
from comfyfarm.worker.runner import JobContext, run_job
from comfyfarm.workflows import SchemaSource, WorkflowError, prepare_jobs
from comfyfarm.workflows.inputs import check_input_file

TESTS = Path(__file__).resolve().parents[1]
SEED_API = TESTS / "seed" / "SD1.5_text2image_API.json"
SEED_UI = TESTS / "seed" / "SD1.5_text2image_vae-ft-mse-840000.json"


@dataclass
class Ctx:
    """What the cases work with: a scratch dir, a schema, a real simulator, a farm (no
    workers: submit-level cases never reach one), the storage root."""

    tmp: Path
    schema: SchemaSource
    sim: SimulatorProcess
    farm: Farm
    root: Path

    def api(self) -> dict[str, Any]:
        prompt: dict[str, Any] = json.loads(SEED_API.read_text())
        return prompt

    def file(self, name: str, data: bytes | str) -> Path:
        path = self.tmp / name
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    def spec(self, **changes: Any) -> dict[str, Any]:
        """A valid JobSpec dict (as a worker receives it) with ``changes``."""
        [prepared] = prepare_jobs(self.api(), schema=self.schema)
        spec = self.farm_spec(prepared)
        return {**spec, **changes}

    def farm_spec(self, prepared: Any) -> dict[str, Any]:
        from comfyfarm.producer import build_spec

        return build_spec(prepared, settings=self.farm.settings).to_dict()  # type: ignore[call-arg]

    def run_evil(self, mode: str) -> None:
        """A job through the real runner on the real simulator, which reports unsafe names."""
        arm(self.sim, evil_output={"mode": mode, "nth": 1})
        [prepared] = prepare_jobs(
            self.api(), schema=self.schema, sets=[f"3.seed={uuid.uuid4().int % 10**9}"]
        )
        spec = JobSpec.from_dict(self.farm_spec(prepared))
        client = ComfyClient(self.sim.url)
        ctx = JobContext(client=client, store=open_store(self.root.as_uri()), client_id="bad-in")
        run_job(spec, ctx)


def silent_server() -> tuple[str, socket.socket]:
    """A TCP server that accepts connections and never answers (a hung ComfyUI front end)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    threading.Thread(target=lambda: [server.accept() for _ in range(16)], daemon=True).start()
    return f"http://127.0.0.1:{server.getsockname()[1]}", server


def _set_link(ctx: Ctx, node: str, name: str, value: Any) -> dict[str, Any]:
    prompt = ctx.api()
    prompt[node]["inputs"][name] = value
    return prompt


def _with_text(ctx: Ctx, node: str, text: str) -> dict[str, Any]:
    entry: dict[str, Any] = copy.deepcopy(ctx.api()[node])
    entry["inputs"]["text"] = text
    return entry


def _renamed(ctx: Ctx, old: str, new: str) -> dict[str, Any]:
    return {(new if key == old else key): value for key, value in ctx.api().items()}


def _cycle(ctx: Ctx) -> dict[str, Any]:
    """Two samplers feeding each other's latent (type-correct links, so only the cycle is wrong)."""
    prompt = ctx.api()
    prompt["30"] = copy.deepcopy(prompt["3"])
    prompt["30"]["inputs"]["latent_image"] = ["3", 0]
    prompt["3"]["inputs"]["latent_image"] = ["30", 0]
    return prompt


def _junk_meta(ctx: Ctx, junk: bytes) -> str:
    job_id = new_job_id()
    ctx.farm.results.set(celery_result_key(ctx.farm.settings.key_prefix, job_id), junk)
    return job_id


Case = tuple[str, Callable[[Ctx], object], Any, str]  # error None: the call returns, repr has it

CASES: list[Case] = [
    # -- workflow files ---------------------------------------------------------------------------
    (
        "not-json",
        lambda c: prepare_jobs(c.file("a.json", "{oops"), schema=c.schema),
        WorkflowError,
        "a.json (line 1, column 2): not JSON",
    ),
    (
        "neither-format",
        lambda c: prepare_jobs({"foo": 1, "bar": [2]}, schema=c.schema),
        WorkflowError,
        "neither API format (an object of node id -> {class_type, inputs}) nor UI format",
    ),
    (
        "json-array",
        lambda c: prepare_jobs(c.file("b.json", "[1, 2]"), schema=c.schema),
        WorkflowError,
        "b.json: expected a JSON object (a workflow), got a JSON array",
    ),
    (
        "ui-unknown-node-type",
        lambda c: prepare_jobs(
            json.loads(SEED_UI.read_text().replace('"KSampler"', '"NoSuchSampler"')),
            schema=c.schema,
        ),
        WorkflowError,
        "node 3 (NoSuchSampler): node type 'NoSuchSampler' is not installed",
    ),
    (
        "api-unknown-class",
        lambda c: prepare_jobs(
            {**c.api(), "99": {"class_type": "NoSuchNode", "inputs": {}}}, schema=c.schema
        ),
        WorkflowError,
        "node 99 (NoSuchNode): node type 'NoSuchNode' is not installed",
    ),
    (
        "link-to-missing-node",
        lambda c: prepare_jobs(_set_link(c, "3", "model", ["999", 0]), schema=c.schema),
        WorkflowError,
        "node 3 (KSampler) input model: is linked to node 999, which is not in the prompt",
    ),
    (
        "link-to-missing-output",
        lambda c: prepare_jobs(_set_link(c, "3", "model", ["4", 7]), schema=c.schema),
        WorkflowError,
        "node 3 (KSampler) input model: is linked to output 7 of node 4 (CheckpointLoaderSimple), "
        "which has 3 output(s)",
    ),
    (
        "wrong-type",
        lambda c: prepare_jobs(_set_link(c, "3", "steps", "many"), schema=c.schema),
        WorkflowError,
        "node 3 (KSampler) input steps: 'many' is not an integer",
    ),
    (
        "out-of-range",
        lambda c: prepare_jobs(_set_link(c, "3", "cfg", -5), schema=c.schema),
        WorkflowError,
        "node 3 (KSampler) input cfg: -5.0 is smaller than the minimum 0.0",
    ),
    (
        "not-an-option",
        lambda c: prepare_jobs(_set_link(c, "3", "sampler_name", "warp_drive"), schema=c.schema),
        WorkflowError,
        "node 3 (KSampler) input sampler_name: 'warp_drive' is not one of [euler,",
    ),
    (
        "missing-model",
        lambda c: prepare_jobs(_set_link(c, "4", "ckpt_name", "nope.safetensors"), schema=c.schema),
        WorkflowError,
        "input ckpt_name: model 'nope.safetensors' is not installed",
    ),
    (
        "override-no-node",
        lambda c: prepare_jobs(c.api(), schema=c.schema, sets=["77.steps=3"]),
        WorkflowError,
        "'77.steps': no node has id, title or class '77'",
    ),
    (
        "override-several-nodes",
        lambda c: prepare_jobs(
            {**c.api(), "30": copy.deepcopy(c.api()["3"])},
            schema=c.schema,
            sets=["KSampler.steps=3"],
        ),
        WorkflowError,
        "'KSampler.steps' is ambiguous: 2 nodes match 'KSampler'",
    ),
    (
        "override-no-input",
        lambda c: prepare_jobs(c.api(), schema=c.schema, sets=["3.nosuch=3"]),
        WorkflowError,
        "'3.nosuch': node 3 (KSampler) has no input 'nosuch'",
    ),
    (
        "unknown-param",
        lambda c: prepare_jobs(c.api(), schema=c.schema, params=["warp=9"]),
        WorkflowError,
        "unknown parameter 'warp'; available (inferred): prompt,",
    ),
    # -- hostile JSON and command lines (issue 13 #8) -------------------------------------------
    (
        "json-nested-10000-deep",
        lambda c: prepare_jobs(c.file("deep.json", "[" * 10_000 + "]" * 10_000), schema=c.schema),
        WorkflowError,
        "deep.json: JSON we do not accept: nested more than 100 levels deep",
    ),
    (
        "json-infinity",
        lambda c: prepare_jobs(
            c.file("inf.json", SEED_API.read_text().replace('"cfg": 8', '"cfg": Infinity')),
            schema=c.schema,
        ),
        WorkflowError,
        "inf.json: JSON we do not accept: Infinity is not a JSON number",
    ),
    (
        "json-lone-surrogate",
        lambda c: prepare_jobs(
            c.file("sur.json", json.dumps({**c.api(), "7": _with_text(c, "7", "\udcff")})),
            schema=c.schema,
        ),
        WorkflowError,
        "sur.json: JSON we do not accept: 7.inputs.text: text with a lone surrogate",
    ),
    (
        "json-5001-digit-integer",
        lambda c: prepare_jobs(
            c.file(
                "big.json", SEED_API.read_text().replace('"seed": 1234', '"seed": ' + "9" * 5001)
            ),
            schema=c.schema,
        ),
        WorkflowError,
        "big.json: JSON we do not accept: an integer of more than 40 digits",
    ),
    (
        "dict-with-nan",
        lambda c: prepare_jobs(_set_link(c, "3", "cfg", float("nan")), schema=c.schema),
        WorkflowError,
        "workflow: 3.inputs.cfg: nan is not a JSON number",
    ),
    (
        "param-cfg-nan",
        lambda c: prepare_jobs(c.api(), schema=c.schema, params=["cfg=nan"]),
        WorkflowError,
        "node 3 (KSampler) input cfg: expected a finite number, got nan",
    ),
    (
        "set-non-utf8-text",
        lambda c: prepare_jobs(c.api(), schema=c.schema, sets=["6.text=\udcffcat"]),
        WorkflowError,
        "input text: text with a lone surrogate '\\udcff' at character 0",
    ),
    (
        "label-non-utf8",
        lambda c: c.farm.submit(prepare_jobs(c.api(), schema=c.schema)[0], labels={"k": "\udcff"}),
        JobSpecError,
        "labels.k: not Unicode text: a lone surrogate",
    ),
    (
        "node-id-with-slash",
        lambda c: prepare_jobs(_renamed(c, "9", "a/b"), schema=c.schema),
        WorkflowError,
        "node id 'a/b' cannot name the node's outputs in storage",
    ),
    (
        "node-id-with-slash-no-schema",
        lambda c: prepare_jobs(_renamed(c, "9", "../x"), schema=None),
        WorkflowError,
        "node id '../x' cannot name the node's outputs in storage",
    ),
    (
        "graph-cycle",
        lambda c: prepare_jobs(_cycle(c), schema=c.schema),
        WorkflowError,
        "nodes 30 → 3 → 30 form a cycle of links",
    ),
    # -- job specs (producer and the worker's decoder) -------------------------------------------
    (
        "huge-prompt",
        lambda c: JobSpec.from_dict(
            c.spec(
                prompt={
                    **c.api(),
                    "99": {"class_type": "Note", "inputs": {"text": "x" * (8 * 1024 * 1024)}},
                }
            )
        ),
        JobSpecError,
        "prompt: 8389834 bytes of JSON, more than the limit of 8388608",
    ),
    (
        "huge-params",
        lambda c: JobSpec.from_dict(c.spec(params={"p": "x" * 70_000})),
        JobSpecError,
        "params: 70008 bytes of JSON, more than the limit of 65536",
    ),
    (
        "huge-label",
        lambda c: JobSpec.from_dict(c.spec(labels={"team": "x" * 300})),
        JobSpecError,
        "labels.team: longer than 256 characters",
    ),
    (
        "huge-workflow-name",
        lambda c: JobSpec.from_dict(c.spec(workflow_name="w" * 201)),
        JobSpecError,
        "workflow_name: longer than 200 characters",
    ),
    (
        "non-uuid-job-id",
        lambda c: c.farm.submit(prepare_jobs(c.api(), schema=c.schema)[0], job_id="job-1"),
        JobSpecError,
        "job_id: not a UUID: 'job-1'",
    ),
    (
        "duplicate-job-ids",
        lambda c: c.farm.send([JobSpec.from_dict(c.spec())] * 2),
        JobSpecError,
        "job_id: the same job id appears twice",
    ),
    (
        "spec-version",
        lambda c: JobSpec.from_dict(c.spec(version=99)),
        JobSpecError,
        "version: unsupported version 99 (this code reads 1)",
    ),
    (
        "spec-not-object",
        lambda c: JobSpec.from_dict(["prompt"]),
        JobSpecError,
        "must be an object, not list",
    ),
    (
        "deadline-over-max",
        lambda c: c.farm.submit(prepare_jobs(c.api(), schema=c.schema)[0], deadline_seconds=10**6),
        JobSpecError,
        "deadline_seconds: 1e+06 s exceeds COMFYFARM_MAX_JOB_SECONDS=6",
    ),
    (
        "storage-prefix-escape",
        lambda c: JobSpec.from_dict(c.spec(storage_prefix="../../etc")),
        JobSpecError,
        "storage_prefix: must not contain empty, '.' or '..' parts",
    ),
    # -- input files -------------------------------------------------------------------------------
    (
        "input-missing",
        lambda c: check_input_file(str(c.tmp / "gone.png")),
        WorkflowError,
        "gone.png': does not exist",
    ),
    (
        "input-missing-on-worker",
        lambda c: read_input(
            InputFile(
                node_id="9", input_name="image", source=str(c.tmp / "gone.png"), filename="x.png"
            )
        ),
        WorkerInputError,
        "gone.png': No such file or directory",
    ),
    (
        "input-directory",
        lambda c: read_input(
            InputFile(node_id="9", input_name="image", source=str(c.tmp), filename="x.png")
        ),
        WorkerInputError,
        "input 9.image from '",
    ),
    (
        "input-too-big",
        lambda c: read_input(
            InputFile(
                node_id="9",
                input_name="image",
                source=str(_sparse(c, 100 * 1024 * 1024 + 1)),
                filename="big.png",
            )
        ),
        WorkerInputError,
        "104857601 bytes is over the 104857600-byte limit",
    ),
    (
        "input-not-image",
        lambda c: check_input_file(str(c.file("notes.png", "just text"))),
        WorkflowError,
        "notes.png': does not look like an image (not PNG, JPEG, GIF, WebP, BMP or TIFF)",
    ),
    (
        "input-bad-scheme",
        lambda c: read_input(
            InputFile(node_id="9", input_name="image", source="ftp://host/x.png", filename="x.png")
        ),
        (WorkerInputError, JobSpecError),
        "source: scheme must be one of http, https, file, s3, memory",
    ),
    # -- outputs named by ComfyUI (real simulator, real runner) ------------------------------------
    (
        "output-dotdot",
        lambda c: c.run_evil("dotdot"),
        UnsafeOutputPath,
        "unsafe output path ''/'../ComfyUI_",
    ),
    (
        "output-absolute",
        lambda c: c.run_evil("absolute"),
        UnsafeOutputPath,
        "'/tmp/comfyfarm-evil/ComfyUI_",
    ),
    ("output-nul", lambda c: c.run_evil("nul"), UnsafeOutputPath, "NUL byte"),
    (
        "output-subfolder",
        lambda c: c.run_evil("subfolder"),
        UnsafeOutputPath,
        "unsafe output path '../../..'/'ComfyUI_",
    ),
    # -- ComfyUI answering nonsense -------------------------------------------------------------
    (
        "comfy-html",
        lambda c: (
            arm(c.sim, garbage={"route": "/queue", "mode": "html", "nth": 1}),
            ComfyClient(c.sim.url).get_queue(),
        ),
        ComfyUnavailable,
        "unavailable: expected JSON from /api/queue, got text/html",
    ),
    (
        "comfy-garbage",
        lambda c: (
            arm(c.sim, garbage={"route": "/queue", "mode": "garbage", "nth": 1}),
            ComfyClient(c.sim.url).get_queue(),
        ),
        ComfyUnavailable,
        "unavailable: invalid JSON from /api/queue",
    ),
    (
        "comfy-truncated",
        lambda c: (
            arm(c.sim, garbage={"route": "/queue", "mode": "truncated", "nth": 1}),
            ComfyClient(c.sim.url).get_queue(),
        ),
        ComfyUnavailable,
        "unavailable: invalid JSON from /api/queue",
    ),
    (
        "comfy-never-answers",
        lambda c: ComfyClient(silent_server()[0], timeout=0.5).get_queue(),
        ComfyUnavailable,
        "Read timed out. (read timeout=0.5)",
    ),
    (
        "comfy-refuses",
        lambda c: ComfyClient("http://127.0.0.1:9", timeout=2).get_queue(),
        ComfyUnavailable,
        "Connection refused",
    ),
    # -- result backend ---------------------------------------------------------------------------
    ("result-meta-not-json", lambda c: _result_of(c, b"\x00garbage{"), None, "('unknown', None)"),
    (
        "result-meta-wrong-shape",
        lambda c: _result_of(c, b'{"status": 7, "result": [1]}'),
        None,
        ", None)",
    ),
]


def _sparse(ctx: Ctx, size: int) -> Path:
    path = ctx.tmp / f"sparse-{size}.png"
    with path.open("wb") as handle:
        handle.write(png_bytes())
        handle.truncate(size)
    return path


def _result_of(ctx: Ctx, junk: bytes) -> object:
    job = ctx.farm.job(_junk_meta(ctx, junk))
    return (job.status(), job.result())


@pytest.fixture(scope="module")
def ctx(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ctx]:
    base = tmp_path_factory.mktemp("bad-input")
    root = base / "store"
    root.mkdir()
    sim = SimulatorProcess(args=("--step-ms", "1", "--load-ms", "0")).start()
    settings = Settings(
        broker_url=redis_url, storage_url=root.as_uri(), key_prefix=f"bad-{uuid.uuid4().hex[:8]}:",
        max_job_seconds=6,
    )  # fmt: skip
    schema = SchemaSource.from_url(sim.url)
    scratch = base / "scratch"
    scratch.mkdir()
    try:
        with Farm(settings) as farm:
            yield Ctx(scratch, schema, sim, farm, root)
    finally:
        sim.stop()


@pytest.mark.parametrize(("case", "call", "error", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_naming_what_and_where(
    ctx: Ctx, case: str, call: Callable[[Ctx], object], error: Any, expected: str
) -> None:
    """Each bad input raises its typed error with a message naming the problem; nothing is
    written outside the storage root."""
    before = set(ctx.root.parent.rglob("*")) - set(ctx.root.rglob("*"))
    if error is None:  # a well-defined answer, not an exception
        assert expected in repr(call(ctx))
    else:
        with pytest.raises(error) as info:
            call(ctx)
        assert expected in str(info.value)
    after = set(ctx.root.parent.rglob("*")) - set(ctx.root.rglob("*"))
    assert after - before <= {p for p in after if p.is_relative_to(ctx.tmp)}
    assert not Path("/tmp/comfyfarm-evil").exists()


def test_non_utf8_bytes_on_the_command_line_are_an_error_not_a_traceback(ctx: Ctx) -> None:
    """``comfyfarm validate --set 6.text=<0xff>`` names the node and input, exit 2 (bad input),
    no traceback."""
    argv = [sys.executable, "-P", "-m", "comfyfarm", "validate", str(SEED_API),
            "--comfy-url", ctx.sim.url, "--set", "6.text=\udcffcat"]  # fmt: skip
    encoded = [os.fsencode(arg) for arg in argv]  # the surrogate goes out as the byte 0xff
    done = subprocess.run(encoded, capture_output=True, timeout=60)

    assert done.returncode == 2
    output = (done.stdout + done.stderr).decode("utf-8", "replace")
    assert "input text: text with a lone surrogate" in output
    assert "Traceback" not in output
