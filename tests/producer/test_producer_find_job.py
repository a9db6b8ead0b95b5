"""Jobs found by id or by any unique prefix (the progress bars show 8 characters)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from producer_helpers import PROMPT

from comfyfarm.producer import Farm, UnknownJob


def test_a_unique_prefix_finds_the_job(farm: Farm) -> None:
    """The full id and its first 8 characters both find the job; case and spaces don't matter."""
    job = farm.submit(PROMPT)
    assert farm.find_job(job.job_id).job_id == job.job_id
    assert farm.find_job(f" {job.job_id[:8].upper()} ").job_id == job.job_id


def test_an_ambiguous_prefix_names_the_matches(farm: Farm) -> None:
    """Two jobs sharing a prefix: the prefix is refused, listing both."""
    first = farm.submit(PROMPT, job_id="abcdef01-0000-4000-8000-000000000001")
    second = farm.submit(PROMPT, job_id="abcdef01-0000-4000-8000-000000000002")
    with pytest.raises(UnknownJob) as caught:
        farm.find_job("abcdef01")
    assert caught.value.matches == [first.job_id, second.job_id]
    assert "ambiguous" in str(caught.value)
    assert farm.find_job("abcdef01-0000-4000-8000-000000000002").job_id == second.job_id


@pytest.mark.parametrize("text", ["0123abcd", "2d97baf8-449c-4b3e-9388-27283e5cafb7", "zz", ""])
def test_an_unknown_or_malformed_id_is_unknown(farm: Farm, text: str) -> None:
    """No job with that id or prefix (or not hex at all): UnknownJob with no matches."""
    with pytest.raises(UnknownJob) as caught:
        farm.find_job(text)
    assert caught.value.matches == []


def test_cancel_of_an_unknown_job_says_unknown_and_fails(farm: Farm) -> None:
    """`comfyfarm cancel` of an id this farm never saw prints "unknown job" and exits 2."""
    env = {"COMFYFARM_BROKER_URL": farm.settings.broker_url,
           "COMFYFARM_KEY_PREFIX": farm.settings.key_prefix, "PATH": "/usr/bin"}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-P", "-m", "comfyfarm", "cancel", "2d97baf8-449c-4b3e-9388-27283e5cafb7"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "unknown job" in done.stderr and "Traceback" not in done.stderr


def test_submit_to_a_worker_nobody_runs_is_refused_unless_allowed_offline(farm: Farm) -> None:
    """`submit --worker gpu9` with no such live worker: exit 2 naming the queue; with
    --allow-offline the job is queued for a worker that will come."""
    env = {"COMFYFARM_BROKER_URL": farm.settings.broker_url,
           "COMFYFARM_KEY_PREFIX": farm.settings.key_prefix, "PATH": "/usr/bin"}  # fmt: skip
    argv = [sys.executable, "-P", "-m", "comfyfarm", "submit", "sd15_text2image", "--no-validate",
            "--worker", "gpu9"]  # fmt: skip
    refused = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2
    assert "no live worker consumes comfyfarm.worker.gpu9" in refused.stderr
    queued = subprocess.run([*argv, "--allow-offline"], env=env, capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert queued.returncode == 0, queued.stderr
    assert farm.status(ping_timeout=None).queue_depth("comfyfarm.worker.gpu9") == 1
