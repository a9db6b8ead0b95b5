"""Webhooks sign only what the farm produced and never hold a GPU's pool slot (issue 13 #10, #2)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from farm_kit import WebhookReceiver, WorkerFactory, wait_until

from comfyfarm.producer import Farm
from comfyfarm.tasks.models import new_job_id
from comfyfarm.tasks.names import DELIVER_WEBHOOK
from comfyfarm.tasks.routing import SHARED_QUEUE
from comfyfarm.worker.webhook import verify
from comfyfarm.worker.webhook_task import describe
from comfyfarm.workflows import SchemaSource, prepare_jobs

SECRET = "s3cret-for-tests"


def _forge(farm: Farm, url: str, job_id: str, result: dict[str, Any]) -> None:
    """What anyone who can write to the broker can send."""
    payload = {"url": url, "job_id": job_id, "result": result}
    farm.app.send_task(DELIVER_WEBHOOK, args=[payload], queue=SHARED_QUEUE)


def test_forged_webhook_messages_get_nothing_signed_but_the_stored_result(
    farm: Farm, workers: WorkerFactory, sim
) -> None:
    """A forged delivery for an unknown job is refused; one naming a real job with a forged
    body delivers the job's stored result, never the forged body."""
    worker = workers.start(sim, env={"COMFYFARM_WEBHOOK_SECRET": SECRET})
    [prepared] = prepare_jobs("sd15_text2image", schema=SchemaSource.from_url(sim.url))
    result = farm.submit(prepared).wait(30)

    with WebhookReceiver() as receiver:
        unknown = new_job_id()
        _forge(farm, receiver.url, unknown, {"pay": "attacker 1000"})
        worker.wait_for_log(f"webhook message for job '{unknown}' refused")
        assert receiver.requests == []
        _forge(farm, receiver.url, result.job_id, {"status": "succeeded", "forged": True})
        assert receiver.received.wait(10)

    [call] = receiver.requests
    assert json.loads(call.body) == result.to_dict()
    stamp = int(call.headers["Comfyfarm-Webhook-Timestamp"])
    assert verify(SECRET, stamp, call.body, call.headers["Comfyfarm-Webhook-Signature"])


class TricklingReceiver:
    """Answers every POST one byte per second, forever (until the client gives up): a per-read
    timeout never fires. Counts connections the client closed."""

    def __init__(self) -> None:
        self.started = 0
        self.closed = 0
        self.stop = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.started += 1
                try:
                    for byte in b"HTTP/1.1 200 OK\r\n" * 1000:
                        if receiver.stop.is_set():
                            return
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        receiver.stop.wait(1.0)
                except OSError:
                    receiver.closed += 1

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


def test_a_trickling_webhook_receiver_never_stalls_the_jobs(
    farm: Farm, workers: WorkerFactory, sim
) -> None:
    """With every webhook going to a receiver that trickles its answer forever, all jobs of a
    worker still finish (deliveries are off the job pool), and each attempt is cut off by its
    total deadline."""
    receiver = TricklingReceiver()
    try:
        workers.start(sim)
        prepared = prepare_jobs(
            "sd15_text2image", schema=SchemaSource.from_url(sim.url), sweeps=["seed=1..6"]
        )
        jobs = [farm.submit(job, webhook_url=receiver.url) for job in prepared]

        results = [job.wait(30) for job in jobs]

        assert all(r.status == "succeeded" for r in results)
        assert receiver.started >= 1
        wait_until(lambda: receiver.closed >= 1, 20, "an attempt cut off by its deadline")
    finally:
        receiver.close()


def test_flower_sees_no_webhook_url_path_or_token() -> None:
    """The argsrepr of a delivery shows the job and the receiver's host, not its path/query."""
    shown = describe({"url": "https://u:pw@hooks.example:8443/T0/B1/tok3n?sig=abc", "job_id": "j"})
    assert shown == "job j → https://hooks.example:8443/…"
    assert not any(secret in shown for secret in ("tok3n", "abc", "pw", "T0"))
