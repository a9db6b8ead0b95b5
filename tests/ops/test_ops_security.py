"""Security through the real path: a password-protected Redis, a worker process, a producer.

The module's worker runs with ``COMFYFARM_WEBHOOK_SECRET`` set, consumes from the
password-protected Valkey and feeds one simulator. The tests send it real jobs, a wrong password
and a pickled message.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from ops_kit import (
    REDIS_PASSWORD,
    START_TIMEOUT,
    executions,
    farm_env,
    output_of,
    sd15_job,
    wait_for,
    worker_process,
)

from comfyfarm.producer import Farm, SubmitError
from comfyfarm.producer.build import build_spec
from comfyfarm.services import ManagedProcess, RedisServer, SimulatorProcess
from comfyfarm.tasks.names import RUN_JOB
from comfyfarm.tasks.routing import SHARED_QUEUE
from comfyfarm.tasks.settings import Settings
from comfyfarm.workflows import PreparedJob

WEBHOOK_SECRET = "topsecret-xyz"
WORKER = "ops-sec"
PICKLE_REFUSED = "Refusing to deserialize untrusted content of type pickle"


@dataclass
class SecureFarm:
    """One worker on a password-protected Valkey, with the producer's settings."""

    env: dict[str, str]
    settings: Settings
    sim: SimulatorProcess
    worker: ManagedProcess

    def job(self, seed: int) -> PreparedJob:
        """A fresh job (a new seed: ComfyUI would serve an identical prompt from its cache)."""
        return sd15_job(self.sim.url, f"seed={seed}", "steps=2")


@pytest.fixture(scope="module")
def secure_farm(
    secure_redis: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecureFarm]:
    assert f":{REDIS_PASSWORD}@" in secure_redis.url
    env = farm_env(
        secure_redis.url,
        key_prefix="ops-sec:",
        storage=tmp_path_factory.mktemp("sec-out"),
        COMFYFARM_WEBHOOK_SECRET=WEBHOOK_SECRET,
    )
    with SimulatorProcess(args=["--step-ms", "1", "--load-ms", "0"]) as sim:
        worker = worker_process(env, sim.url, WORKER).start(START_TIMEOUT)
        try:
            yield SecureFarm(
                env=env,
                settings=Settings.from_env(env),
                sim=sim,
                worker=worker,
            )
        finally:
            worker.stop()


def test_job_runs_end_to_end_with_a_redis_password(secure_farm: SecureFarm) -> None:
    """Producer and worker authenticate with redis://:PASSWORD@...; the job succeeds."""
    before = executions(secure_farm.sim.url)
    with Farm(secure_farm.settings) as farm:
        result = farm.submit(secure_farm.job(1)).wait(30)
    assert result.status == "succeeded" and result.worker == WORKER
    assert executions(secure_farm.sim.url) == before + 1
    assert REDIS_PASSWORD not in output_of(secure_farm.worker)


def test_wrong_password_is_a_clear_error_within_seconds(secure_farm: SecureFarm) -> None:
    """A producer with a wrong password gets SubmitError naming the auth failure, not a hang."""
    wrong = secure_farm.settings.with_overrides(
        broker_url=secure_farm.settings.broker_url.replace(REDIS_PASSWORD, "wrong-password")
    )
    started = time.monotonic()
    with Farm(wrong) as farm, pytest.raises(SubmitError) as caught:
        farm.submit(secure_farm.job(2))
    # kombu retries the connection (2 + 2 + 2 s) before it gives up.
    assert time.monotonic() - started < 10
    assert "invalid username-password pair" in str(caught.value)
    assert caught.value.job_ids_sent == []
    assert "wrong-password" not in str(caught.value)


def test_worker_with_a_wrong_password_says_why(
    secure_farm: SecureFarm, secure_redis: RedisServer
) -> None:
    """A worker that cannot authenticate logs the reason (password masked) instead of hanging."""
    env = dict(
        secure_farm.env,
        COMFYFARM_BROKER_URL=secure_redis.url.replace(REDIS_PASSWORD, "wrong-password"),
    )
    worker = worker_process(
        env, secure_farm.sim.url, "ops-sec-wrong", ready_mark="Cannot connect to redis://:**@"
    )
    with worker.start(START_TIMEOUT):
        pass
    text = output_of(worker)
    assert "invalid username-password pair" in text
    assert "wrong-password" not in text


class _Canary:
    """Unpickling this touches a file: proof that a pickled body was (or was not) decoded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.path.touch, ())


def _publish_pickled_job(settings: Settings, spec: dict[str, Any], canary: Path) -> str:
    """A protocol-2 RUN_JOB message, pickle-serialized, put on the shared queue with kombu."""
    task_id = spec["job_id"]
    headers = {
        "lang": "py", "task": RUN_JOB, "id": task_id, "root_id": task_id, "parent_id": None,
        "group": None, "argsrepr": "pickled", "kwargsrepr": "{}", "retries": 0, "eta": None,
        "expires": None, "timelimit": [None, None], "origin": "attacker@ops",
    }  # fmt: skip
    embed = {"callbacks": None, "errbacks": None, "chain": None, "chord": None,
             "canary": _Canary(canary)}  # fmt: skip
    with Farm(settings) as farm, farm.app.producer_or_acquire() as producer:
        producer.publish(
            ([spec], {}, embed),
            serializer="pickle",  # content_type application/x-python-serialize
            exchange="",
            routing_key=SHARED_QUEUE,
            headers=headers,
            declare=[farm.app.amqp.queues[SHARED_QUEUE]],
        )
    return str(task_id)


def test_worker_refuses_a_pickled_message_and_keeps_working(
    secure_farm: SecureFarm, tmp_path: Path
) -> None:
    """A pickled RUN_JOB is refused undecoded and dropped; the worker then runs the next job."""
    canary = tmp_path / "unpickled"
    spec = build_spec(secure_farm.job(3), secure_farm.settings).to_dict()
    before = executions(secure_farm.sim.url)
    _publish_pickled_job(secure_farm.settings, spec, canary)
    wait_for(
        lambda: PICKLE_REFUSED in output_of(secure_farm.worker),
        timeout=15,
        what="the worker to log that it refused the pickled message",
    )
    assert not canary.exists(), "the worker unpickled the message body"
    assert secure_farm.worker.alive()
    with Farm(secure_farm.settings) as farm:
        assert farm.status(ping_timeout=None).queued == 0  # dropped, not re-queued
        assert farm.redis.hlen(f"{secure_farm.settings.key_prefix}unacked") == 0
        assert farm.submit(secure_farm.job(4)).wait(30).status == "succeeded"
    assert executions(secure_farm.sim.url) == before + 1  # only the valid job ran
    assert not canary.exists()


class _WebhookReceiver(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []
    arrived = threading.Event()

    def do_POST(self) -> None:  # noqa: N802 -- http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers.items()), body))
        self.send_response(204)
        self.end_headers()
        type(self).arrived.set()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 -- base signature
        pass


@pytest.fixture
def webhook_url() -> Iterator[str]:
    _WebhookReceiver.received = []
    _WebhookReceiver.arrived = threading.Event()
    server = HTTPServer(("127.0.0.1", 0), _WebhookReceiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hook?run={uuid.uuid4().hex}"
    finally:
        server.shutdown()
        server.server_close()


def test_webhook_secret_signs_but_is_never_logged(
    secure_farm: SecureFarm, webhook_url: str
) -> None:
    """The webhook arrives signed with COMFYFARM_WEBHOOK_SECRET; the secret is in no log or repr."""
    from comfyfarm.worker.webhook import verify

    with Farm(secure_farm.settings) as farm:
        job = farm.submit(secure_farm.job(5), webhook_url=webhook_url)
        assert job.wait(30).status == "succeeded"
    assert _WebhookReceiver.arrived.wait(15), "the webhook never arrived"
    headers, body = _WebhookReceiver.received[0]
    assert json.loads(body)["job_id"] == job.job_id
    timestamp = int(headers["Comfyfarm-Webhook-Timestamp"])
    assert verify(WEBHOOK_SECRET, timestamp, body, headers["Comfyfarm-Webhook-Signature"])
    assert len(secure_farm.worker.output) < 200  # the whole output is kept, so all of it is read
    assert WEBHOOK_SECRET not in output_of(secure_farm.worker)
    assert WEBHOOK_SECRET not in repr(Settings.from_env(secure_farm.env))
    assert REDIS_PASSWORD not in repr(Settings.from_env(secure_farm.env))
