"""Memory bombs from a ComfyUI are bounded: oversized /history and /view answers fail the job
with ``ResponseTooLarge``, and a WebSocket frame that is huge or never ends cannot hold a job
past its stall timeout (issue 13 #5)."""

from __future__ import annotations

from farm_kit import WorkerFactory, executions

from comfyfarm.producer import Farm
from comfyfarm.workflows import SchemaSource, prepare_jobs

MIB = 1 << 20


def test_history_answer_over_the_limit_fails_the_job_naming_the_setting(
    farm: Farm, workers: WorkerFactory, start_sim
) -> None:
    """A /history answer larger than COMFYFARM_MAX_JSON_BYTES fails the job (not read whole)."""
    sim = start_sim("--step-ms", "1", "--load-ms", "0", "--fault", f"bloat:bytes={4 * MIB}")
    workers.start(sim, env={"COMFYFARM_MAX_JSON_BYTES": str(MIB)})
    [prepared] = prepare_jobs("sd15_text2image", schema=SchemaSource.from_url(sim.url))

    result = farm.submit(prepared).wait(30)

    assert result.status == "failed"
    error = result.error or {}
    assert error["type"] == "ResponseTooLarge"
    assert error["setting"] == "COMFYFARM_MAX_JSON_BYTES" and error["limit"] == MIB
    assert "/history/" in error["route"]


def test_view_download_over_the_limit_fails_the_job_and_stores_nothing(
    farm: Farm, workers: WorkerFactory, start_sim, out_dir
) -> None:
    """An output larger than COMFYFARM_MAX_OUTPUT_BYTES stops the download and fails the job."""
    sim = start_sim(
        "--step-ms", "1", "--load-ms", "0", "--fault", f"bloat:route=/view,bytes={16 * MIB}"
    )  # fmt: skip
    workers.start(sim, env={"COMFYFARM_MAX_OUTPUT_BYTES": str(MIB)})
    [prepared] = prepare_jobs("sd15_text2image", schema=SchemaSource.from_url(sim.url))

    job = farm.submit(prepared)
    result = job.wait(30)

    assert result.status == "failed"
    error = result.error or {}
    assert error["type"] == "ResponseTooLarge"
    assert error["setting"] == "COMFYFARM_MAX_OUTPUT_BYTES"
    stored = [
        p for p in out_dir.rglob("*") if p.is_file() and p.name not in ("result.json", "log.txt")
    ]
    assert stored == []


def test_frame_announcing_a_terabyte_drops_the_socket_and_the_job_still_succeeds(
    farm: Farm, workers: WorkerFactory, start_sim
) -> None:
    """A frame header announcing 2**40 bytes (then a trickle) is refused before its payload is
    read; the worker reconnects, asks ComfyUI, and the job succeeds, run once."""
    sim = start_sim(
        "--step-ms", "20", "--load-ms", "0",
        "--fault", "ws_bomb:after_ms=50,length=1099511627776,trickle_ms=100",
    )  # fmt: skip
    workers.start(sim)
    [prepared] = prepare_jobs("sd15_text2image", schema=SchemaSource.from_url(sim.url))

    job = farm.submit(prepared, stall_timeout_seconds=30)
    result = job.wait(30)

    assert result.status == "succeeded", result.error
    assert executions(sim, job.job_id) == 1


def test_frame_that_trickles_forever_cannot_outlast_the_stall_timeout(
    farm: Farm, workers: WorkerFactory, start_sim
) -> None:
    """A frame under the size limit that arrives a byte at a time does not block the reader:
    after the stall timeout the worker asks ComfyUI, finds the prompt done and collects it."""
    sim = start_sim(
        "--step-ms", "1", "--load-ms", "0",
        "--fault", f"ws_bomb:after_ms=0,length={10 * MIB},trickle_ms=100",
    )  # fmt: skip
    workers.start(sim)
    [prepared] = prepare_jobs("sd15_text2image", schema=SchemaSource.from_url(sim.url))

    job = farm.submit(prepared, stall_timeout_seconds=2)
    result = job.wait(30)

    assert result.status == "succeeded", result.error
    assert executions(sim, job.job_id) == 1
