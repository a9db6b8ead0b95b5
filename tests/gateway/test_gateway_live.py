"""Outputs shown while a job runs, and jobs past their retention (``expired``)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import redis
from comfy_sdk import Preview
from farm_kit import wait_until
from tenants import TOKENS
from workflows_kit import invert, text2image

from comfyfarm.tasks.keyspace import job_outputs_key
from comfyfarm.tasks.models import OutputRecord
from comfyfarm.tasks.settings import Settings
from comfyfarm.worker.live_outputs import LIST_AFTER_SECONDS, OutputAnnouncer

HEADERS = {"Authorization": f"Bearer {TOKENS['acme']}"}


def text_output(index: int) -> OutputRecord:
    return OutputRecord(node_id="7", kind="text", index=index, filename="", uri=None, bytes=0,
                        hash="", mime="text/plain", value=f"line {index}")  # fmt: skip


def test_outputs_appear_and_stream_before_the_job_ends(sdk, gateway, settings: Settings) -> None:
    """An output the worker announces shows in GET /jobs/{id} and as an ``output`` event while
    the job has not finished, its content downloadable; each is sent once."""
    client = sdk("acme")
    job = client.submit(client.workflows.from_json(invert()))  # no worker: it never finishes
    url = f"{gateway.url}/api/v2/jobs/{job.id}"
    rds = redis.Redis.from_url(settings.broker_url)

    with httpx.stream("GET", url + "/events", headers=HEADERS, timeout=20) as stream:
        lines = stream.iter_lines()
        assert next(lines) == "event: status"  # the snapshot: subscribed
        # Listed at once (no wait): a worker whose outputs waited, or a redelivered run.
        OutputAnnouncer(rds, settings, job.id, list_after=0).offer(text_output(0))
        announcer = OutputAnnouncer(rds, settings, job.id, list_after=0)
        announcer.offer(text_output(0))  # a redelivery: announced again
        announcer.offer(text_output(1))
        events: list[tuple[str, dict[str, object]]] = []
        name = ""
        for line in lines:
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: ") and name == "output":
                events.append((name, json.loads(line[len("data: ") :])))
                if len(events) == 2:
                    break

    body = httpx.get(url, headers=HEADERS, timeout=10).json()
    assert body["status"] == "queued"
    assert [o["name"] for o in body["outputs"]] == ["7_text_0.txt", "7_text_1.txt"]
    assert [data["id"] for _, data in events] == [o["id"] for o in body["outputs"]]
    content = httpx.get(body["outputs"][1]["url"], headers=HEADERS, timeout=10)
    assert content.status_code == 200 and content.text == "line 1"
    assert job.refresh().outputs[0].id == body["outputs"][0]["id"]  # the SDK reads them too


def output_events(lines: Iterator[str]) -> Iterator[dict[str, object]]:
    """The data of each ``output`` event of an SSE stream, as it comes."""
    name = ""
    for line in lines:
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: ") and name == "output":
            yield json.loads(line[len("data: ") :])


def test_an_output_streams_at_once_before_it_is_listed(sdk, gateway, settings: Settings) -> None:
    """The worker lists outputs lazily: the ``output`` event comes from the announcement
    itself, and GET /jobs/{id} shows the output once it is listed."""
    client = sdk("acme")
    job = client.submit(client.workflows.from_json(invert()))  # no worker: it never finishes
    url = f"{gateway.url}/api/v2/jobs/{job.id}"
    rds = redis.Redis.from_url(settings.broker_url)
    announce = OutputAnnouncer(rds, settings, job.id, list_after=60)  # not listed in this test

    with httpx.stream("GET", url + "/events", headers=HEADERS, timeout=20) as stream:
        lines = stream.iter_lines()
        assert next(lines) == "event: status"  # the snapshot: subscribed
        announce(text_output(0))
        event = next(output_events(lines))

    assert not rds.exists(job_outputs_key(settings.key_prefix, job.id))
    assert event["name"] == "7_text_0.txt"
    assert httpx.get(url, headers=HEADERS, timeout=10).json()["outputs"] == []
    announce.close()


def test_a_late_reader_sees_an_output_of_a_running_job_within_a_second(
    sdk, gateway, start_sim, workers, settings: Settings
) -> None:
    """A real worker whose second output downloads slowly: the first streams at once, and a
    reader polling GET /jobs/{id} sees it while the job runs, within ~LIST_AFTER_SECONDS."""
    sim = start_sim("--step-ms", "1", "--load-ms", "0",
                    "--fault", "view_slow:nth=2,bytes_per_second=100")  # fmt: skip
    workers.start(sim)
    client = sdk("acme")
    workflow = invert(width=8, height=8)
    workflow["1"]["inputs"]["batch_size"] = 2
    job = client.submit(client.workflows.from_json(workflow))
    url = f"{gateway.url}/api/v2/jobs/{job.id}"

    with httpx.stream("GET", url + "/events", headers=HEADERS, timeout=60) as stream:
        first = next(output_events(stream.iter_lines()))
        streamed_at = time.monotonic()
    shown = wait_until(lambda: httpx.get(url, headers=HEADERS, timeout=10).json()["outputs"],
                       timeout=LIST_AFTER_SECONDS + 2, what="the first output in GET")  # fmt: skip
    body = httpx.get(url, headers=HEADERS, timeout=10).json()

    assert time.monotonic() - streamed_at < LIST_AFTER_SECONDS + 2
    assert body["status"] == "running"  # the second output still trickles
    assert [o["id"] for o in shown] == [first["id"]]
    assert len(job.result().outputs) == 2


def test_a_job_that_ends_with_its_output_writes_no_list(
    sdk, gateway, start_sim, workers, settings: Settings
) -> None:
    """A real worker's job whose only output comes right before its result: the output is
    announced but never listed (the result carries it; 1 command instead of 3)."""
    workers.start(start_sim("--step-ms", "1", "--load-ms", "0"))
    client = sdk("acme")
    job = client.submit(client.workflows.from_json(invert())).result()
    rds = redis.Redis.from_url(settings.broker_url)

    body = httpx.get(f"{gateway.url}/api/v2/jobs/{job.id}", headers=HEADERS, timeout=10).json()

    assert [o["name"] for o in body["outputs"]] == ["invert_00001_.png"]
    assert not rds.exists(job_outputs_key(settings.key_prefix, job.id))


def test_a_job_past_its_retention_is_expired(start_gateway, sdk_factory_for) -> None:
    """Past COMFYFARM_RESULT_EXPIRES a job answers status ``expired`` (no outputs), in GET,
    in the list and in its event stream, which ends; cancel leaves it so."""
    gateway = start_gateway(COMFYFARM_RESULT_EXPIRES="2")
    client = sdk_factory_for(gateway)("acme")
    job = client.submit(client.workflows.from_json(invert()))
    url = f"{gateway.url}/api/v2/jobs/{job.id}"

    def expired() -> dict[str, object] | None:
        body: dict[str, object] = httpx.get(url, headers=HEADERS, timeout=10).json()
        return body if body["status"] == "expired" else None

    body = wait_until(expired, timeout=30, what="the job to expire")
    events = httpx.get(url + "/events", headers=HEADERS, timeout=10).text

    assert body["outputs"] == [] and body["error"]["code"] == "expired"
    assert client.jobs.get(job.id).status == "expired"
    assert [s.status for s in client.list_jobs()] == ["expired"]
    assert events.strip().endswith('"status":"expired","queue_position":null}')
    assert job.cancel().status == "expired"


def test_events_carry_the_newest_preview_while_the_job_runs(sdk, start_sim, workers) -> None:
    """With a ComfyUI that sends latent previews, job.events() delivers Preview events (the
    image as ComfyUI sent it, at most about 2 a second) before the terminal status."""
    workers.start(start_sim("--step-ms", "100", "--load-ms", "0", "--previews"))
    client = sdk("acme")
    job = client.submit(client.workflows.from_json(text2image(steps=20)))

    events = list(job.events())

    previews = [e for e in events if isinstance(e, Preview)]
    assert previews, [type(e).__name__ for e in events]
    magic = {"image/jpeg": b"\xff\xd8", "image/png": b"\x89PNG"}[previews[0].content_type]
    assert previews[0].data.startswith(magic)
    assert previews[0].node_id == "3"  # the KSampler
    assert len(previews) <= 2 * 20 * 0.1 + 2  # throttled: 2 s of steps, ≤ 2 a second
    assert events.index(previews[-1]) < len(events) - 1
