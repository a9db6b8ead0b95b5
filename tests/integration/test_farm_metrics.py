"""A worker's Prometheus metrics, scraped from a real worker running real jobs on a simulator."""

from __future__ import annotations

import json
import subprocess
import sys

import requests
from farm_kit import WorkerFactory, sim_stats, wait_until
from prometheus_client.parser import text_string_to_metric_families

from comfyfarm.producer import Farm
from comfyfarm.services import free_port

PROMPT = {
    "1": {"class_type": "EmptyImage",
          "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "m"}},
}  # fmt: skip


def scrape(url: str, token: str | None = None) -> dict[tuple[str, frozenset], float]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = requests.get(url, headers=headers, timeout=5)
    response.raise_for_status()
    samples: dict[tuple[str, frozenset], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            samples[key] = samples.get(key, 0.0) + sample.value
    return samples


def total(samples: dict[tuple[str, frozenset], float], name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, lbls), v in samples.items() if n == name and wanted <= set(lbls))


def test_metrics_move_with_jobs_and_comfyui_health(
    workers: WorkerFactory, start_sim, farm: Farm
) -> None:
    """comfy_up and VRAM come from /system_stats; jobs, execution time and node time count up
    as jobs finish; nothing stays in flight."""
    sim = start_sim("--step-ms", "1", "--load-ms", "0")
    port = free_port()
    workers.start(sim, "gm", args=("--metrics-port", str(port)))
    url = f"http://127.0.0.1:{port}/metrics"
    wait_until(lambda: total(scrape(url), "comfyfarm_comfy_up", worker="gm") == 1, what="comfy_up")
    before = scrape(url)
    assert total(before, "comfyfarm_comfy_vram_total_bytes", worker="gm") > 0
    assert total(before, "comfyfarm_jobs_total", worker="gm") == 0

    jobs = [farm.submit(PROMPT, workflow_name="tiny") for _ in range(3)]
    for job in jobs:
        assert job.wait(timeout=60).status == "succeeded"

    def counted() -> bool:
        return total(scrape(url), "comfyfarm_jobs_total", outcome="succeeded") == 3

    wait_until(counted, what="three succeeded jobs in the metrics")
    after = scrape(url)
    assert total(after, "comfyfarm_job_execution_seconds_count", workflow="tiny") == 3
    assert total(after, "comfyfarm_job_queue_wait_seconds_count", workflow="tiny") == 3
    assert total(after, "comfyfarm_node_seconds_count", class_type="SaveImage") >= 1
    assert total(after, "comfyfarm_jobs_in_flight", worker="gm") == 0


def colored(color: int) -> dict:
    """PROMPT with its own colour: ComfyUI's cache cannot serve it from an earlier job."""
    prompt = json.loads(json.dumps(PROMPT))
    prompt["1"]["inputs"]["color"] = color
    return prompt


def test_pipeline_idle_gap_counts_only_jobs_that_were_waiting(
    workers: WorkerFactory, start_sim, farm: Farm
) -> None:
    """Jobs submitted one after another's result add no gap (the GPU had no work); of three
    queued together the second and third each add one, matching the simulator's own timeline
    (start of a prompt minus the end of the one before) and below the jobs' spacing. Without
    pipelining (--depth 0) each gap holds a collect and a submit, so it is measurably above 0."""
    sim = start_sim("--step-ms", "1", "--load-ms", "0", "--class-ms", "EmptyImage=300")
    port = free_port()
    workers.start(sim, "gap", args=("--metrics-port", str(port), "--depth", "0"))
    url = f"http://127.0.0.1:{port}/metrics"
    wait_until(lambda: total(scrape(url), "comfyfarm_comfy_up", worker="gap") == 1, what="up")
    gap = "comfyfarm_pipeline_idle_gap_seconds"

    for color in (1, 2):  # each submitted after the previous one finished
        assert farm.submit(colored(color)).wait(timeout=60).status == "succeeded"
    queued = [farm.submit(colored(color)) for color in (3, 4, 5)]
    results = [job.wait(timeout=60) for job in queued]
    assert [r.status for r in results] == ["succeeded"] * 3, [r.error for r in results]

    def counted() -> bool:
        return total(scrape(url), "comfyfarm_jobs_total", outcome="succeeded") == 5

    wait_until(counted, what="five succeeded jobs in the metrics")
    samples = scrape(url)
    assert total(samples, gap + "_count", worker="gap") == 2
    runs = {run["prompt_id"]: run for run in sim_stats(sim)["timeline"]}
    spans = [runs[job.job_id] for job in queued]
    pairs = list(zip(spans, spans[1:], strict=False))
    expected = [after["start"] - before["end"] for before, after in pairs]
    spacing = [after["start"] - before["start"] for before, after in pairs]
    observed = total(samples, gap + "_sum", worker="gap")
    assert 0 < observed < sum(spacing), (observed, spacing)
    assert abs(observed - sum(expected)) < 0.05 * len(expected), (observed, expected)


def test_metrics_need_the_token_when_one_is_set(workers: WorkerFactory, start_sim) -> None:
    """With COMFYFARM_METRICS_TOKEN set, a scrape without the bearer token gets 401."""
    sim = start_sim("--step-ms", "1", "--load-ms", "0")
    port = free_port()
    workers.start(
        sim, "gt", args=("--metrics-port", str(port)), env={"COMFYFARM_METRICS_TOKEN": "t0ken"}
    )
    url = f"http://127.0.0.1:{port}/metrics"
    assert requests.get(url, timeout=5).status_code == 401
    assert requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=5).status_code == 401
    wait_until(lambda: total(scrape(url, "t0ken"), "comfyfarm_comfy_up") == 1, what="comfy_up")


def test_metrics_on_a_public_address_without_a_token_are_refused(workers: WorkerFactory) -> None:
    """`--metrics-host 0.0.0.0` without COMFYFARM_METRICS_TOKEN exits 2 before starting."""
    done = subprocess.run(
        [sys.executable, "-P", "-m", "comfyfarm", "worker", "--metrics-port", "0",
         "--metrics-host", "0.0.0.0"],
        env=workers.env(), capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 2
    assert "COMFYFARM_METRICS_TOKEN" in done.stderr


def test_the_farm_exporter_reports_queue_depth_and_workers(
    workers: WorkerFactory, farm: Farm
) -> None:
    """`comfyfarm exporter` counts queued jobs per queue and registered workers at each scrape."""
    from comfyfarm.services import ManagedProcess

    port = free_port()
    exporter = ManagedProcess(
        [sys.executable, "-P", "-m", "comfyfarm", "exporter", "--port", str(port)],
        ready=lambda line: "comfyfarm exporter on" in line, name="exporter", env=workers.env(),
    ).start()  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        assert total(scrape(url), "comfyfarm_queue_depth") == 0
        for _ in range(2):
            farm.submit(PROMPT)  # no worker: they stay queued
        assert total(scrape(url), "comfyfarm_queue_depth", queue="comfyfarm") == 2
        assert total(scrape(url), "comfyfarm_dead_letters") == 0
    finally:
        exporter.stop()
