"""Credentials in ``--comfy-url http://user:pw@host`` never leave the worker's HTTP client:
not in result.json, Redis (results, registry, ledger, schemas), ``comfyfarm status``, the
worker's log, error messages or webhooks (issue 13 #6)."""

from __future__ import annotations

import subprocess
import sys
import zlib
from types import SimpleNamespace
from urllib.parse import urlsplit

import redis
from farm_kit import WebhookReceiver, WorkerFactory, path_of, wait_until

from comfyfarm.producer import Farm
from comfyfarm.workflows import SchemaSource, prepare_jobs

PASSWORD = "pw-s3cr3t-4711"


def _everything_in_redis(url: str, prefix: str) -> str:
    """Every key and value under the farm's prefix (zlib values inflated), as text to search."""
    client = redis.Redis.from_url(url)
    readers = {
        "string": client.get,
        "hash": client.hgetall,
        "list": lambda key: client.lrange(key, 0, -1),
        "set": client.smembers,
        "zset": lambda key: client.zrange(key, 0, -1),
    }
    blob = []
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        kind = client.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        reader = readers.get(kind)
        value = reader(key) if reader else kind
        if isinstance(value, bytes) and value.startswith(b"x\x9c"):
            value = zlib.decompress(value)
        blob.append(f"{key!r}={value!r}")
    assert len(blob) > 5, blob  # results, job record, ledger, registry, schemas ...
    return "\n".join(blob)


def test_comfy_url_credentials_are_redacted_everywhere(
    farm: Farm, workers: WorkerFactory, start_sim
) -> None:
    """A job (retried once after a 5xx, with a webhook) on a worker whose --comfy-url carries a
    password: the password appears in no result, Redis value, status output, log or webhook."""
    sim = start_sim("--step-ms", "1", "--load-ms", "0", "--fault", "prompt_5xx:times=1")
    parts = urlsplit(sim.url)
    secret_url = f"http://farm:{PASSWORD}@{parts.hostname}:{parts.port}"
    worker = workers.start(SimpleNamespace(url=secret_url))  # type: ignore[arg-type]
    [prepared] = prepare_jobs("sd15_text2image", schema=SchemaSource.from_url(sim.url))

    with WebhookReceiver() as receiver:
        job = farm.submit(prepared, webhook_url=receiver.url)
        result = job.wait(30)
        assert receiver.received.wait(10)
    status = subprocess.run(
        [sys.executable, "-P", "-m", "comfyfarm", "status", "--json"],
        env=workers.env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    wait_until(lambda: "retry" in worker.log(), 10, "the retry in the worker's log")

    assert result.status == "succeeded" and result.attempts == 2
    assert result.comfy_url == f"http://farm:***@{parts.hostname}:{parts.port}"
    result_json = path_of(result.outputs[0].uri or "").parent / "result.json"
    assert PASSWORD not in result_json.read_text()
    assert PASSWORD not in _everything_in_redis(farm.settings.broker_url, farm.settings.key_prefix)
    assert "farm:***@" in status.stdout and PASSWORD not in status.stdout + status.stderr
    assert "ComfyUI server error 500" in worker.log() and PASSWORD not in worker.log()
    assert all(PASSWORD.encode() not in call.body for call in receiver.requests)
