"""run_job directly against a simulator (no Celery): the job sequence and its idempotence."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import requests

from comfyfarm.comfy.client import ComfyClient
from comfyfarm.storage import MemoryStore
from comfyfarm.tasks.models import JobProgress, JobSpec, OutputRecord, new_job_id
from comfyfarm.worker.runner import JobContext, run_job
from comfyfarm.workflows import SchemaSource, prepare_jobs


@pytest.fixture
def store() -> Iterator[MemoryStore]:
    memory = MemoryStore(f"runner-{uuid.uuid4().hex}")
    yield memory
    memory.clear()


def spec_for(sim_url: str) -> JobSpec:
    [prepared] = prepare_jobs(
        "sd15_text2image", schema=SchemaSource.from_url(sim_url), params=["steps=4"]
    )
    return JobSpec(job_id=new_job_id(), prompt=prepared.prompt, params=prepared.params)


def executions(sim_url: str, prompt_id: str) -> int:
    stats = requests.get(sim_url + "/_sim/stats", timeout=5).json()
    return int(stats["executions"].get(prompt_id, 0))


def test_running_the_same_job_twice_executes_it_once(sim, store: MemoryStore) -> None:
    """A second run of a finished job collects its outputs again without a second execution."""
    spec = spec_for(sim.url)
    client = ComfyClient(sim.url)
    seen: list[JobProgress] = []
    ctx = JobContext(client=client, store=store, client_id="c1", on_progress=seen.append)

    first = run_job(spec, ctx)
    second = run_job(spec, JobContext(client=client, store=store, client_id="c2"))

    assert first.status == second.status == "succeeded"
    assert executions(sim.url, spec.job_id) == 1
    assert [o.hash for o in second.outputs] == [o.hash for o in first.outputs]
    assert store.exists(f"{spec.job_id}/result.json")
    assert [p.phase for p in seen][0] == "submitted" and seen[-1].phase == "collecting"


def test_job_cancelled_before_it_starts_never_reaches_comfyui(sim, store: MemoryStore) -> None:
    """A job whose cancel flag is already set ends cancelled without submitting anything."""
    spec = spec_for(sim.url)
    ctx = JobContext(
        client=ComfyClient(sim.url), store=store, client_id="c1", cancel_requested=lambda: True
    )

    result = run_job(spec, ctx)

    assert result.status == "cancelled" and result.outputs == []
    assert executions(sim.url, spec.job_id) == 0


def test_a_vanished_output_of_a_forgotten_prompt_is_a_lost_prompt() -> None:
    """/view 404 for a listed file, and ComfyUI no longer knows the prompt (it restarted between
    history and download): PromptLost, which is retried, not a permanent failure."""
    from comfyfarm.comfy.errors import ComfyRequestError, PromptLost
    from comfyfarm.comfy.state import PromptLookup, PromptState
    from comfyfarm.worker.runner import _vanished_output

    class Forgetful:
        def __init__(self, state: PromptState) -> None:
            self.state = state

        def lookup(self, prompt_id: str) -> PromptLookup:
            return PromptLookup(state=self.state, history=None)

    missing = ComfyRequestError(url="http://x/view", status=404, body="")
    lost = _vanished_output(Forgetful(PromptState.UNKNOWN), "p1", missing)  # type: ignore[arg-type]
    assert isinstance(lost, PromptLost) and lost.prompt_id == "p1"
    kept = _vanished_output(Forgetful(PromptState.DONE), "p1", missing)  # type: ignore[arg-type]
    assert kept is missing


class DictLedger:
    """A submission ledger that lost every record (Redis lost its last second of AOF)."""

    def __init__(self) -> None:
        self.records: dict[str, str] = {}

    def where(self, job_id: str) -> str | None:
        return self.records.get(job_id)

    def record(self, job_id: str, comfy_url: str) -> None:
        self.records[job_id] = comfy_url


def test_a_prompt_comfyui_has_without_a_ledger_record_is_not_posted_again(
    sim, store: MemoryStore
) -> None:
    """ComfyUI already has the prompt but the ledger has no record of it: collected, run once."""
    spec = spec_for(sim.url)
    client = ComfyClient(sim.url)
    client.queue_prompt(spec.prompt, prompt_id=spec.job_id, client_id="before-the-crash")
    ledger = DictLedger()  # the record written before that POST was lost

    result = run_job(spec, JobContext(client=client, store=store, client_id="c1", ledger=ledger))

    assert result.status == "succeeded" and len(result.outputs) == 1
    assert executions(sim.url, spec.job_id) == 1
    assert ledger.records == {}  # nothing was POSTed, so nothing was recorded


class FailsOnSecondOutput(MemoryStore):
    """A memory store whose disk fills up after the first output (index 1 cannot be written)."""

    def write(self, key, chunks, *, content_type=None):  # type: ignore[no-untyped-def]
        if "_1_" in key.rsplit("/", 1)[-1]:
            from comfyfarm.storage.base import StorageUnavailable

            raise StorageUnavailable(key=key, reason="No space left on device (ENOSPC)")
        return super().write(key, chunks, content_type=content_type)


def test_a_job_whose_collect_fails_leaves_none_of_its_outputs(sim) -> None:
    """Outputs are all-or-nothing: the first of two outputs is removed when the second fails."""
    from comfyfarm.storage.base import StorageUnavailable

    [prepared] = prepare_jobs(
        "sd15_text2image", schema=SchemaSource.from_url(sim.url), params=["steps=2", "batch=2"]
    )
    spec = JobSpec(job_id=new_job_id(), prompt=prepared.prompt, params=prepared.params)
    store = FailsOnSecondOutput(f"partial-{uuid.uuid4().hex}")
    ended: list[int] = []
    ctx = JobContext(client=ComfyClient(sim.url), store=store, client_id="c1",
                     on_outputs_end=lambda: ended.append(1))  # fmt: skip
    try:
        with pytest.raises(StorageUnavailable):
            run_job(spec, ctx)
        # no output stays; the job's own records (its ComfyUI log) may
        assert [key for key in store.keys() if not key.endswith("/log.txt")] == []
        assert ended == [1]  # the outputs announced before the failure end with the run
    finally:
        store.clear()


def test_each_output_is_announced_once_it_is_stored(sim, store: MemoryStore) -> None:
    """on_output is called with each output right after it is in the store, before the result;
    on_outputs_end once after the last (the caller writes the result next)."""
    spec = spec_for(sim.url)
    announced: list[tuple[str, bool]] = []

    def on_output(record: OutputRecord) -> None:
        assert record.uri is not None
        announced.append((record.uri, store.exists(record.uri[len(store.url) + 1 :])))

    def on_outputs_end() -> None:
        announced.append(("end", store.exists(f"{spec.job_id}/result.json")))

    ctx = JobContext(client=ComfyClient(sim.url), store=store, client_id="c1",
                     on_output=on_output, on_outputs_end=on_outputs_end)  # fmt: skip

    result = run_job(spec, ctx)

    assert result.status == "succeeded"
    assert [uri for uri, _ in announced[:-1]] == [o.uri for o in result.outputs]
    assert len(announced) > 1 and all(stored for _, stored in announced)
    assert announced[-1][0] == "end"  # once, after the last output, when result.json is written
