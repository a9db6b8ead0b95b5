"""Flower as operators see it: ``comfyfarm flower`` next to a real worker running a real job.

One module-scoped farm (password-protected Valkey, a simulator with 100 ms sampler steps, one
worker, Flower with basic auth) runs one SD1.5 job while the test watches Flower's HTTP API; the
tests then check what Flower showed. Flower learns everything from events, so its API is polled
with a deadline.
"""

from __future__ import annotations

import argparse
import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from ops_kit import (
    REDIS_PASSWORD,
    START_TIMEOUT,
    farm_env,
    flower_process,
    node_name,
    output_of,
    sd15_job,
    wait_for,
    worker_process,
)

from comfyfarm.commands import flower as flower_command
from comfyfarm.producer import Farm
from comfyfarm.services import ManagedProcess, RedisServer, SimulatorProcess, free_port
from comfyfarm.tasks.names import RUN_JOB
from comfyfarm.tasks.settings import Settings

USER, PASSWORD = "ops", "flower-pw-7431"
WORKER = "ops-flower"
STEPS = 20  # 20 sampler steps of 100 ms: a job long enough to be seen running
FINAL_STATES = {"SUCCESS", "FAILURE"}


# -- flower_argv: the refusal and the options, no process ------------------------------------


def parsed(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    flower_command.configure(parser)
    return parser.parse_args(list(argv))


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "", "10.1.2.3", "flower.example.org"])
def test_non_loopback_bind_without_auth_is_refused(address: str) -> None:
    """Binding anything but loopback without COMFYFARM_FLOWER_BASIC_AUTH raises FlowerRefused."""
    with pytest.raises(flower_command.FlowerRefused) as caught:
        flower_command.flower_argv(parsed("--address", address), None)
    assert caught.value.address == address
    assert "COMFYFARM_FLOWER_BASIC_AUTH" in str(caught.value)


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_bind_without_auth_is_allowed(address: str) -> None:
    """On loopback Flower may run without auth (its API then stays disabled)."""
    argv = flower_command.flower_argv(parsed("--address", address), None)
    assert f"--address={address}" in argv
    assert not any(arg.startswith("--basic-auth") for arg in argv)


def test_non_loopback_bind_with_auth_passes_basic_auth() -> None:
    """With credentials a container-wide bind is allowed and Flower gets --basic-auth."""
    argv = flower_command.flower_argv(parsed("--address", "0.0.0.0"), "admin:pw")
    assert "--address=0.0.0.0" in argv and "--basic-auth=admin:pw" in argv


def test_argv_sets_long_job_buckets_columns_and_read_only() -> None:
    """Runtime buckets reach half an hour and more, the task list shows args, --read-only passes."""
    argv = flower_command.flower_argv(parsed("--read-only", "--url-prefix", "flower"), None)
    buckets = next(a for a in argv if a.startswith("--task-runtime-metric-buckets="))
    assert {"300", "1800", "3600", "inf"} <= set(buckets.split("=", 1)[1].split(","))
    columns = next(a for a in argv if a.startswith("--tasks-columns="))
    assert {"name", "args", "kwargs", "state", "worker", "runtime"} <= set(
        columns.split("=", 1)[1].split(",")
    )
    assert "--read-only=true" in argv and "--url-prefix=flower" in argv


def test_run_refuses_before_starting_flower(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``comfyfarm flower --address 0.0.0.0`` without auth exits 2 with the reason on stderr."""
    monkeypatch.delenv("COMFYFARM_FLOWER_BASIC_AUTH", raising=False)
    assert flower_command.run(parsed("--address", "0.0.0.0")) == 2
    assert "refusing to serve Flower on '0.0.0.0'" in capsys.readouterr().err


# -- a real farm watched through Flower ------------------------------------------------------


@dataclass
class Watched:
    """What Flower showed about one job, recorded while it ran."""

    url: str
    job_id: str
    flower: ManagedProcess
    worker: ManagedProcess
    states: list[str] = field(default_factory=list)  # every state /api/task/info reported
    errors: list[str] = field(default_factory=list)  # API answers other than 200/404
    info: dict[str, Any] = field(default_factory=dict)  # /api/task/info after the job
    listed: dict[str, Any] = field(default_factory=dict)  # its /api/tasks entry after the job
    metrics: str = ""


def _api(session: requests.Session, url: str) -> requests.Response:
    return session.get(url, timeout=10)


@pytest.fixture(scope="module")
def watched(
    secure_redis: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Watched]:
    storage: Path = tmp_path_factory.mktemp("flower-out")
    env = farm_env(
        secure_redis.url,
        key_prefix="ops-flower:",
        storage=storage,
        COMFYFARM_FLOWER_BASIC_AUTH=f"{USER}:{PASSWORD}",
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with contextlib.ExitStack() as stack:
        sim = stack.enter_context(SimulatorProcess(args=["--step-ms", "100", "--load-ms", "0"]))
        worker = worker_process(env, sim.url, WORKER).start(START_TIMEOUT)
        stack.callback(worker.stop)
        flower = flower_process(env, port).start(START_TIMEOUT)
        stack.callback(flower.stop)
        session = stack.enter_context(requests.Session())
        session.auth = (USER, PASSWORD)
        # Flower hears the worker's heartbeat: its event receiver is subscribed, no event is lost.
        wait_for(
            lambda: _api(session, f"{url}/api/workers?status=true").json().get(node_name(WORKER)),
            timeout=15,
            what="Flower to see the worker's heartbeat",
        )
        job = sd15_job(sim.url, "seed=7", f"steps={STEPS}", "prompt=a lighthouse at dusk")
        with Farm(Settings.from_env(env)) as farm:
            handle = farm.submit(job, labels={"team": "ops"})
            seen = Watched(url=url, job_id=handle.job_id, flower=flower, worker=worker)

            def finished() -> bool:
                for endpoint in (f"/api/task/info/{handle.job_id}", "/api/tasks"):
                    answer = _api(session, url + endpoint)
                    if answer.status_code not in (200, 404):
                        seen.errors.append(f"GET {endpoint} -> {answer.status_code}")
                    elif endpoint.startswith("/api/task/info") and answer.status_code == 200:
                        seen.states.append(answer.json()["state"])
                return bool(seen.states) and seen.states[-1] in FINAL_STATES

            wait_for(finished, timeout=60, what="Flower to show the job finished")
            assert handle.wait(30).status == "succeeded"
        seen.info = _api(session, f"{url}/api/task/info/{handle.job_id}").json()
        seen.listed = _api(session, f"{url}/api/tasks").json()[handle.job_id]
        seen.metrics = requests.get(f"{url}/metrics", timeout=10).text  # no auth needed
        yield seen


def test_flower_lists_the_job_by_name_with_its_parameters(watched: Watched) -> None:
    """The job is comfyfarm.run_job; args show the workflow and parameters, never the prompt."""
    for view in (watched.info, watched.listed):
        assert view["name"] == RUN_JOB
        args = view["args"]
        assert args.startswith("sd15_text2image(") and "seed=7" in args and f"steps={STEPS}" in args
        assert "a lighthouse at dusk" in args
        assert "class_type" not in args and "KSampler" not in args and len(args) <= 240
        assert view["kwargs"] == "{'team': 'ops'}"


def test_tasks_page_shows_the_parameters_column(watched: Watched) -> None:
    """The dashboard's task list has args (parameters) and kwargs (labels) columns."""
    page = requests.get(f"{watched.url}/tasks", auth=(USER, PASSWORD), timeout=10).text
    columns = re.findall(r'<th data-column="(\w+)"', page)
    assert {"name", "args", "kwargs", "state", "worker", "runtime"} <= set(columns)


def test_flower_shows_progress_while_the_job_runs(watched: Watched) -> None:
    """The worker's task-progress events show as state PROGRESS; Flower's API keeps answering."""
    flower_errors = {line.strip() for line in watched.flower.output if "Error" in line}
    assert not watched.errors, (
        f"Flower's API failed while the job ran: {sorted(set(watched.errors))}: {flower_errors}"
    )
    assert "PROGRESS" in watched.states, f"states seen: {sorted(set(watched.states))}"
    assert watched.states[-1] == "SUCCESS"


def test_flower_shows_worker_and_runtime(watched: Watched) -> None:
    """After the job Flower names the worker node and the runtime."""
    info = watched.info
    assert info["state"] == "SUCCESS"
    assert info["worker"] == node_name(WORKER) == watched.listed["worker"]
    assert info["runtime"] >= STEPS * 0.1 * 0.9  # the sampler alone takes ~2 s
    assert info["received"] <= info["started"] <= info["succeeded"]
    assert "class_type" not in (info.get("result") or "")


def test_api_needs_the_basic_auth_credentials(watched: Watched) -> None:
    """Without (or with wrong) credentials the API answers 401; with them 200."""
    for path in ("/api/tasks", "/api/workers", f"/api/task/info/{watched.job_id}", "/"):
        assert requests.get(watched.url + path, timeout=10).status_code == 401, path
        wrong = requests.get(watched.url + path, auth=(USER, "nope"), timeout=10)
        assert wrong.status_code == 401, path
        assert requests.get(watched.url + path, auth=(USER, PASSWORD), timeout=10).ok, path


def test_metrics_have_buckets_for_long_jobs(watched: Watched) -> None:
    """/metrics has the job's runtime in buckets up to an hour, and counts progress events."""
    labels = rf'task="{re.escape(RUN_JOB)}",worker="{re.escape(node_name(WORKER))}"'
    for bound in ("300.0", "1800.0", "3600.0", "+Inf"):
        bucket = rf'flower_task_runtime_seconds_bucket\{{le="{re.escape(bound)}",{labels}\}} 1\.0'
        assert re.search(bucket, watched.metrics), bound
    progress = re.search(
        rf'flower_events_total\{{task="{re.escape(RUN_JOB)}",type="task-progress",'
        rf'worker="{re.escape(node_name(WORKER))}"\}} ([0-9.]+)',
        watched.metrics,
    )
    assert progress and float(progress.group(1)) > 0


def test_no_secret_in_flower_or_worker_logs(watched: Watched) -> None:
    """Neither process prints the Redis password or Flower's password."""
    for process in (watched.flower, watched.worker):
        text = output_of(process)
        assert REDIS_PASSWORD not in text and PASSWORD not in text


def test_read_only_flower_refuses_actions(
    secure_redis: RedisServer, tmp_path: Path, watched: Watched
) -> None:
    """``comfyfarm flower --read-only`` answers 403 to revoke and task-apply requests."""
    env = farm_env(
        secure_redis.url,
        key_prefix="ops-flower:",
        storage=tmp_path,
        COMFYFARM_FLOWER_BASIC_AUTH=f"{USER}:{PASSWORD}",
    )
    port = free_port()
    with flower_process(env, port, "--read-only").start(START_TIMEOUT):
        base = f"http://127.0.0.1:{port}/api"
        for path in (f"/task/revoke/{watched.job_id}", f"/task/async-apply/{RUN_JOB}"):
            answer = requests.post(base + path, auth=(USER, PASSWORD), json={}, timeout=10)
            assert answer.status_code == 403, path
