"""The producer command line against a real farm: submit, status, result, cancel with --json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import blake3
import redis
from farm_kit import WorkerFactory, executions, wait_until

from comfyfarm.producer import Farm
from comfyfarm.tasks.keys import DeadLetter, push_dead_letter
from comfyfarm.tasks.schemas import load_schemas


def cli(
    workers: WorkerFactory, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-P", "-m", "comfyfarm", *args],
        env=workers.env(), capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def lines(done: subprocess.CompletedProcess[str]) -> list[dict]:
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def test_submit_wait_json_validates_with_published_schemas_and_downloads(
    workers: WorkerFactory, start_sim, tmp_path: Path
) -> None:
    """`submit --wait --json --out` (no --comfy-url: the worker's published schemas validate)
    prints one result per job and copies every output; its BLAKE3 hash matches."""
    sim = start_sim("--step-ms", "2", "--load-ms", "0")
    workers.start(sim)
    done = cli(
        workers,
        "submit",
        "sd15_text2image",
        "--param",
        "prompt=a fox",
        "--sweep",
        "seed=1..3",
        "--wait",
        "--json",
        "--out",
        str(tmp_path / "dl"),
    )
    assert done.returncode == 0, done.stderr
    results = lines(done)
    assert sorted(r["params"]["seed"] for r in results) == [1, 2, 3]
    for result in results:
        assert result["status"] == "succeeded"
        (output,) = result["outputs"]
        (copied,) = result["downloaded"]
        assert "blake3:" + blake3.blake3(Path(copied).read_bytes()).hexdigest() == output["hash"]
        stored = Path(unquote(urlparse(output["uri"]).path))
        assert stored.read_bytes() == Path(copied).read_bytes()


def test_submit_refuses_an_invalid_job_before_enqueueing(
    workers: WorkerFactory, start_sim, farm: Farm
) -> None:
    """A bad value is refused with node and input named; nothing lands in the queue."""
    sim = start_sim("--step-ms", "2", "--load-ms", "0")
    workers.start(sim)
    wait_until(lambda: cli(workers, "status", "--json").returncode == 0, 20)
    done = cli(workers, "submit", "sd15_text2image", "--set", "KSampler.cfg=500")
    assert done.returncode == 2
    assert "node 3" in done.stderr and "cfg" in done.stderr
    assert all(queue.total == 0 for queue in farm.queue_depths())


def test_status_result_and_cancel_json(workers: WorkerFactory, start_sim, farm: Farm) -> None:
    """`status --json` lists the worker with its ComfyUI; `result --json` gives the JobResult;
    `cancel --json` of a queued job reports what it did and the job never runs."""
    sim = start_sim("--step-ms", "40", "--load-ms", "0")
    worker = workers.start(sim, args=("--depth", "0"))
    done = cli(
        workers, "submit", "sd15_text2image", "--sweep", "seed=1,2", "--param", "steps=25", "--json"
    )
    assert done.returncode == 0, done.stderr
    first, second = (entry["job_id"] for entry in lines(done))
    assert all(entry["status"] == "queued" for entry in lines(done))
    assert all(entry["queue"] == "comfyfarm" for entry in lines(done))  # one worker: shared
    wait_until(lambda: farm.job(first).status() == "running", 20, "the first job to run")

    cancelled = json.loads(cli(workers, "cancel", second, "--json").stdout)
    assert cancelled["job_id"] == second and cancelled["status_before"] == "queued"

    status = json.loads(cli(workers, "status", "--json").stdout)
    (listed,) = status["workers"]
    assert listed["info"]["name"] == worker.name
    assert listed["info"]["comfy_url"] == sim.url and listed["info"]["health"] == "ok"

    done = cli(workers, "result", first, "--wait", "--timeout", "30", "--json")
    assert done.returncode == 0
    result = json.loads(done.stdout)
    assert result["job_id"] == first and result["status"] == "succeeded"
    assert result["worker"] == worker.name and result["comfy_url"] == sim.url

    done = cli(workers, "result", second, "--wait", "--timeout", "30", "--json")
    assert json.loads(done.stdout)["status"] == "cancelled" and done.returncode == 1
    assert executions(sim, second) == 0


def test_status_is_a_health_check(workers: WorkerFactory, start_sim, farm: Farm) -> None:
    """`status` exits 1 while no worker can take a job and 0 once one can; `--json` counts the
    workers that can and carries the newest dead letters."""
    push_dead_letter(farm.redis, farm.settings.key_prefix,
                     DeadLetter(job_id="an-old-job", reason="retries exhausted (3)"))  # fmt: skip
    alone = cli(workers, "status", "--json")
    assert alone.returncode == 1
    body = json.loads(alone.stdout)
    assert body["serving"] == 0 and body["dead_letters"] == 1
    assert [letter["job_id"] for letter in body["recent_dead_letters"]] == ["an-old-job"]

    workers.start(start_sim("--step-ms", "1", "--load-ms", "0"))
    served = wait_until(
        lambda: (done := cli(workers, "status")).returncode == 0 and done, 20, "a serving worker"
    )
    assert "1 can take jobs" in served.stdout and "an-old-job" in served.stdout


def test_submit_sends_jobs_to_the_workers_that_have_their_model(
    workers: WorkerFactory, start_sim, farm: Farm
) -> None:
    """Two ComfyUIs, a checkpoint only one has: `submit` checks every worker's published
    schema, sends those jobs to that worker, and refuses a checkpoint neither has."""
    sd15 = "v1-5-pruned-emaonly-fp16.safetensors"
    plain = start_sim("--step-ms", "1", "--load-ms", "0")
    rich = start_sim("--step-ms", "1", "--load-ms", "0",
                     "--models", f"checkpoints={sd15},xl.safetensors")  # fmt: skip
    workers.start(plain, "plain")
    workers.start(rich, "rich")
    wait_until(lambda: len(_published(farm)) == 2, 20, "both workers' schemas")

    done = cli(workers, "submit", "sd15_text2image", "--count", "3", "--wait", "--json",
               "--set", "CheckpointLoaderSimple.ckpt_name=xl.safetensors")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "3 of 3 job(s) need nodes or models that only some workers have" in done.stderr
    results = lines(done)
    assert [r["worker"] for r in results] == ["rich"] * 3
    assert all(r["status"] == "succeeded" for r in results)

    refused = cli(workers, "submit", "sd15_text2image",
                  "--set", "CheckpointLoaderSimple.ckpt_name=nowhere.safetensors")  # fmt: skip
    assert refused.returncode == 2
    assert "ckpt_name" in refused.stderr and "nowhere.safetensors" in refused.stderr
    assert all(queue.total == 0 for queue in farm.queue_depths())


def _published(farm: Farm) -> list[str]:
    client = redis.Redis.from_url(farm.settings.broker_url)
    try:
        return [entry.worker for entry in load_schemas(client, farm.settings.key_prefix)]
    finally:
        client.close()
