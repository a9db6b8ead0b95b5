"""Guarantee 9: cancel racing with completion, cancel of a finished job, double cancel.

Defined results:

- cancel of a job that already finished (succeeded, failed, cancelled) does nothing:
  ``CancelOutcome.status_before`` is that status, ``flag_set`` and ``revoke_sent`` are False,
  and the result is unchanged;
- a second cancel of a running job sets nothing new (``flag_set`` False) and the job still ends
  ``cancelled`` exactly once;
- a cancel racing with completion ends the job either ``succeeded`` (ComfyUI had finished before
  the worker saw the flag: every output is stored) or ``cancelled`` (no outputs in the result);
  never a mix, and the job is never run again.
"""

from __future__ import annotations

from pathlib import Path

from farm_kit import WorkerFactory, executions, path_of, wait_until
from rel_kit import running_on, text2image

from comfyfarm.producer import Farm


def test_cancel_of_a_finished_job_changes_nothing(
    farm: Farm, workers: WorkerFactory, start_sim
) -> None:
    """Cancelling a succeeded job reports its status and leaves the result alone."""
    sim = start_sim("--step-ms", "1", "--load-ms", "0")
    workers.start(sim)
    job = farm.submit(text2image(sim))
    done = job.wait(30)

    outcome = job.cancel()

    assert (outcome.status_before, outcome.flag_set, outcome.revoke_sent) == (
        "succeeded",
        False,
        False,
    )
    assert "nothing to cancel" in str(outcome)
    assert job.status() == "succeeded" and job.result() == done


def test_double_cancel_of_a_running_job_cancels_it_once(
    farm: Farm, workers: WorkerFactory, start_sim
) -> None:
    """The second cancel finds the flag set; the job ends cancelled, with one result."""
    sim = start_sim("--step-ms", "100", "--load-ms", "0")
    workers.start(sim)
    job = farm.submit(text2image(sim, steps=40))
    running_on(job)

    first, second = job.cancel(), job.cancel()

    assert first.flag_set and not second.flag_set
    assert "already set" in str(second)
    result = job.wait(20)
    assert result.status == "cancelled" and result.outputs == []
    assert job.cancel().status_before == "cancelled"
    assert job.result() == result
    assert executions(sim, job.job_id) <= 1


def test_cancel_racing_with_completion_ends_in_exactly_one_outcome(
    farm: Farm, workers: WorkerFactory, start_sim, out_dir: Path
) -> None:
    """Cancels sent just as short jobs finish: each job is succeeded with all outputs stored, or
    cancelled with none; ComfyUI ran each at most once."""
    sim = start_sim("--step-ms", "4", "--load-ms", "0")
    workers.start(sim)
    outcomes = []
    for steps in (20, 25, 30, 35, 40, 45):
        job = farm.submit(text2image(sim, steps=steps))
        wait_until(lambda j=job: j.status() in ("running", "succeeded"), 20, "the job to start")
        job.cancel()
        result = job.wait(20)
        outcomes.append(result.status)
        assert result.status in ("succeeded", "cancelled"), result.error
        if result.status == "succeeded":
            assert len(result.outputs) == 1
            assert all(o.uri and path_of(o.uri).is_file() for o in result.outputs)
        else:
            assert result.outputs == []
        assert executions(sim, job.job_id) <= 1
        assert job.wait(1) == result  # final: the same answer again
