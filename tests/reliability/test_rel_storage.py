"""Guarantee 7: a failing output download or store is retried; no partial file ever shows
under its final name."""

from __future__ import annotations

from pathlib import Path

from farm_kit import WorkerFactory, executions, path_of, wait_until
from rel_kit import arm, files_of, text2image

from comfyfarm.producer import Farm
from comfyfarm.storage.keys import TEMP_PREFIX


def test_view_500_on_the_first_download_is_retried_and_collected(
    farm: Farm, workers: WorkerFactory, start_sim, out_dir: Path
) -> None:
    """GET /view fails once: the retry collects the finished prompt without running it again."""
    sim = start_sim("--step-ms", "1", "--load-ms", "0", "--fault", "view_500:nth=1")
    workers.start(sim)

    result = farm.submit(text2image(sim)).wait(30)

    assert result.status == "succeeded", result.error
    assert result.attempts == 2
    assert executions(sim, result.job_id) == 1
    [output] = result.outputs
    assert output.uri is not None
    assert path_of(output.uri).stat().st_size == output.bytes
    assert not [p for p in files_of(out_dir, result.job_id) if TEMP_PREFIX in p]


def test_download_cut_midway_leaves_no_partial_file_under_the_final_name(
    farm: Farm, workers: WorkerFactory, start_sim, out_dir: Path
) -> None:
    """ComfyUI dies while an output trickles into storage: only a temporary file existed, the
    final name never did; the retried job stores the whole file."""
    sim = start_sim("--step-ms", "1", "--load-ms", "0")
    workers.start(sim)
    arm(sim, view_slow={"bytes_per_second": 200})
    job = farm.submit(text2image(sim))

    temp = wait_until(
        lambda: [p for p in files_of(out_dir, job.job_id) if TEMP_PREFIX in p],
        20,
        "the download to start",
    )
    # only the temporary file so far (and the job's ComfyUI log, stored when the prompt ended)
    assert [p for p in files_of(out_dir, job.job_id) if not p.endswith("/log.txt")] == temp
    sim.kill()
    sim.start()  # the fault was armed at runtime: downloads are fast again

    result = job.wait(40)
    assert result.status == "succeeded", result.error
    [output] = result.outputs
    assert output.uri is not None
    final = path_of(output.uri)
    assert final.stat().st_size == output.bytes
    assert not [p for p in files_of(out_dir, job.job_id) if TEMP_PREFIX in p]
