"""A job id names one job: reused with a different spec it is refused before anything is sent,
reused with the same spec it finds the existing job (issue 13 #7)."""

from __future__ import annotations

import pytest
from farm_kit import WorkerFactory, executions

from comfyfarm.producer import Farm, JobIdInUse
from comfyfarm.workflows import SchemaSource, prepare_jobs


def test_reused_job_id_with_a_different_spec_is_refused(
    farm: Farm, workers: WorkerFactory, sim
) -> None:
    """submit(p2, job_id=Y) after submit(p1, job_id=Y) raises JobIdInUse naming Y (not a false
    "succeeded" with p1's image); submit(p1, job_id=Y) again returns p1's job, run once."""
    workers.start(sim)
    schema = SchemaSource.from_url(sim.url)
    [p1] = prepare_jobs("sd15_text2image", schema=schema, params=["seed=1"])
    [p2] = prepare_jobs("sd15_text2image", schema=schema, params=["seed=2"])
    first = farm.submit(p1)
    result = first.wait(30)
    assert result.status == "succeeded"

    with pytest.raises(JobIdInUse) as caught:
        farm.submit(p2, job_id=first.job_id)
    again = farm.submit(p1, job_id=first.job_id).wait(30)

    assert caught.value.job_id == first.job_id
    assert first.job_id in str(caught.value) and "different" in str(caught.value)
    assert caught.value.job_ids_sent == [] and caught.value.job_ids_not_sent == [first.job_id]
    assert again.status == "succeeded" and again.params == result.params
    assert [o.sha256 for o in again.outputs] == [o.sha256 for o in result.outputs]
    assert executions(sim, first.job_id) == 1
