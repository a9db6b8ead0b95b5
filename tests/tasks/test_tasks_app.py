"""The Celery app factory: configuration for long jobs, JSON only, prefixed keys, priorities."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest
from kombu.exceptions import ContentDisallowed

from comfyfarm.tasks.app import celery_config, make_app
from comfyfarm.tasks.keyspace import celery_result_key
from comfyfarm.tasks.names import RUN_JOB
from comfyfarm.tasks.routing import SHARED_QUEUE, celery_priority, queue_keys
from comfyfarm.tasks.settings import Settings


def test_config_for_long_jobs() -> None:
    """Acks late, requeue on worker loss, prefetch 1, and the visibility timeout in 3 places."""
    settings = Settings(max_job_seconds=600, key_prefix="farm:")
    conf = celery_config(settings)
    assert conf["task_acks_late"] and conf["task_reject_on_worker_lost"]
    assert conf["worker_prefetch_multiplier"] == 1
    visibility = int(settings.visibility_timeout)
    assert conf["visibility_timeout"] == visibility
    assert conf["broker_transport_options"]["visibility_timeout"] == visibility
    assert conf["result_backend_transport_options"]["visibility_timeout"] == visibility
    assert conf["broker_transport_options"]["global_keyprefix"] == "farm:"
    assert conf["result_backend_transport_options"]["global_keyprefix"] == "farm:"
    assert conf["task_time_limit"] < visibility
    assert conf["task_soft_time_limit"] < conf["task_time_limit"]


def test_json_only_and_monitoring_on() -> None:
    """Only JSON is produced or accepted; events and extended results are on; the STARTED
    state is left to the worker's first progress update."""
    app = make_app(Settings())
    conf = app.conf
    assert (conf.task_serializer, conf.result_serializer, conf.event_serializer) == ("json",) * 3
    assert conf.accept_content == ["json"] and conf.result_accept_content == ["json"]
    assert conf.worker_send_task_events and conf.task_send_sent_event
    assert not conf.task_track_started and conf.result_extended
    assert conf.result_expires == 7 * 24 * 3600
    assert conf.broker_connection_retry_on_startup
    assert conf.worker_soft_shutdown_timeout > 0 and conf.worker_enable_soft_shutdown_on_idle
    assert conf.task_default_queue == SHARED_QUEUE
    assert conf.task_routes[RUN_JOB]["queue"] == SHARED_QUEUE
    assert conf.broker_transport_options["priority_steps"] == list(range(10))


def test_rediss_urls_verify_certificates() -> None:
    """A rediss:// URL without ssl_cert_reqs gets certificate verification, not an error."""
    import ssl

    conf = celery_config(Settings(broker_url="rediss://redis.example:6380/0"))
    assert conf["broker_use_ssl"]["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    assert conf["redis_backend_use_ssl"]["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    explicit = celery_config(Settings(broker_url="rediss://h:6380/0?ssl_cert_reqs=none"))
    assert "broker_use_ssl" not in explicit


def test_make_app_registers_no_task_and_imports_no_worker_code() -> None:
    """Producers get an app with no farm task, without importing the worker package."""
    code = (
        "import sys; from comfyfarm.tasks.app import make_app; "
        "from comfyfarm.tasks.settings import Settings; "
        "app = make_app(Settings()); "
        "assert 'comfyfarm.run_job' not in app.tasks; "
        "print(sorted(m for m in sys.modules "
        "if m.startswith(('comfyfarm.worker', 'comfyfarm.producer'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_result_key_matches_celery(settings: Settings) -> None:
    """Our name for a job's result key is the one Celery's Redis backend uses."""
    app = make_app(settings)
    job_id = str(uuid.uuid4())
    assert app.backend.get_key_for_task(job_id).decode() == celery_result_key(
        settings.key_prefix, job_id
    )
    app.close()


def test_pickled_message_is_refused(settings: Settings) -> None:
    """A pickled message on the farm's queue cannot be decoded by a consumer using the app's
    accept_content: writing to Redis does not let anyone run code in a worker."""
    app = make_app(settings)
    with app.connection_for_write() as conn:
        producer = conn.Producer(serializer="pickle")
        producer.publish({"evil": True}, routing_key=SHARED_QUEUE, declare=[])
    with app.connection_for_read() as conn:
        queue = conn.SimpleQueue(SHARED_QUEUE, accept=app.conf.accept_content)
        with pytest.raises(ContentDisallowed, match="pickle"):
            queue.get(timeout=5)
        queue.close()
    app.close()


def test_priorities_use_prefixed_lists_and_urgent_first(settings: Settings) -> None:
    """Messages land in the prefixed priority lists; a consumer pops the most urgent first."""
    app = make_app(settings)
    ids = {}
    for farm_priority in (0, 5, 9):
        ids[farm_priority] = str(uuid.uuid4())
        app.send_task(RUN_JOB, args=[{}], task_id=ids[farm_priority],
                      priority=celery_priority(farm_priority))  # fmt: skip
    import redis

    client = redis.Redis.from_url(settings.broker_url)
    keys = queue_keys(settings.key_prefix, SHARED_QUEUE)
    assert [client.llen(keys[p]) for p in (0, 5, 9)] == [1, 1, 1]
    with app.connection_for_read() as conn:
        queue = conn.SimpleQueue(SHARED_QUEUE, accept=["json"])
        order = []
        for _ in range(3):
            message = queue.get(timeout=5)
            order.append(message.headers["id"])
            message.ack()
        queue.close()
    assert order == [ids[9], ids[5], ids[0]]
    client.close()
    app.close()
