"""The Celery app factory shared by producers and workers.

Configured for minutes-long GPU jobs on a Redis broker (see the research notes, §0-§5, §9):

- JSON only, everywhere (``accept_content``/``result_accept_content``): a pickled message or
  result is refused, so whoever can write to Redis cannot run code in a worker.
- At-least-once delivery: ``task_acks_late`` + ``task_reject_on_worker_lost``, prefetch 1. Redis
  re-delivers an unacknowledged message after ``visibility_timeout`` whether or not its worker is
  still busy, so the timeout (set in all three places) exceeds the hard time limit, and workers
  hold a lease per job (``comfyfarm.tasks.lease``) so a re-delivered copy never runs twice.
- ``global_keyprefix`` isolates the broker and result keys (and pub/sub channels) of this farm.
- Ten Redis priority lists per queue (``priority_steps``), and ``queue_order_strategy =
  "priority"``: a worker drains the queues in the order it lists them (its own queue first).
- Events for Flower (``worker_send_task_events``, ``task_send_sent_event``), extended results,
  results kept ``result_expires`` seconds. No STARTED state in the backend
  (``task_track_started``): it would cost a write before every prompt is submitted, and the
  worker's first progress update ("submitted", sent right after the POST) says more. Flower still
  shows STARTED, from the task-started event.
- Redis Sentinel: a ``sentinel://`` broker or backend gets ``master_name``
  (``settings.sentinel_master``) in its transport options; kombu and Celery then ask the
  sentinels for the master and follow a failover. Sentinels with a password of their own get it
  as ``sentinel_kwargs`` (``settings.sentinel_password``), and so does TLS to the sentinels.
- TLS (``rediss://``, or ``settings.sentinel_tls``): ``broker_use_ssl`` and
  ``redis_backend_use_ssl`` carry ``tasks.tls.tls_options`` (verified, the farm's CA and client
  certificate); with Sentinel they make kombu and Celery connect to the master over TLS too.
- Soft shutdown: on SIGTERM (with ``REMAP_SIGTERM=SIGQUIT``) a worker re-queues its job before
  exiting instead of leaving it to the visibility timeout.

``make_app`` registers no task: the worker registers RUN_JOB on the app it builds, and producers
only ``send`` by name.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from comfyfarm.tasks.connect import sentinel_kwargs
from comfyfarm.tasks.doorbell import RingingAMQP
from comfyfarm.tasks.names import RUN_JOB
from comfyfarm.tasks.routing import PRIORITY_SEP, PRIORITY_STEPS, SHARED_QUEUE, celery_priority
from comfyfarm.tasks.settings import Settings, uses_sentinel
from comfyfarm.tasks.tls import tls_options, url_sets_tls, uses_tls

HEALTH_CHECK_INTERVAL = 25
SOFT_SHUTDOWN_SECONDS = 20.0


def make_app(settings: Settings, *, name: str = "comfyfarm") -> Celery:
    """A Celery app wired to ``settings``; no tasks registered, nothing connected yet."""
    app = Celery(
        name, broker=settings.broker_url, backend=settings.result_backend, amqp=RingingAMQP
    )  # every task message it sends rings its queue's doorbell (tasks.doorbell)
    app.conf.update(celery_config(settings))
    return app


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery configuration ``make_app`` applies (exposed for inspection and tests)."""
    visibility = int(settings.visibility_timeout)
    transport: dict[str, Any] = {
        "visibility_timeout": visibility,
        "global_keyprefix": settings.key_prefix,
        "priority_steps": list(PRIORITY_STEPS),
        "sep": PRIORITY_SEP,
        "queue_order_strategy": "priority",
        "socket_keepalive": True,
        "health_check_interval": HEALTH_CHECK_INTERVAL,
        # A job of a worker that died is re-queued by the next sweep after the visibility
        # timeout; kombu sweeps every interval x throttle (10 x 10 s by default).
        "unacked_restore_interval": settings.restore_interval,
        "unacked_restore_throttle": 1,
        # Not retry_on_timeout: kombu then refuses batched publishing (a replayed pipeline could
        # enqueue a job twice), and submit_many relies on batches.
    }
    config: dict[str, Any] = {
        "task_serializer": "json",
        "result_serializer": "json",
        "event_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "broker_transport_options": transport,
        "result_backend_transport_options": {
            "visibility_timeout": visibility,
            "global_keyprefix": settings.key_prefix,
        },
        "visibility_timeout": visibility,
        "broker_connection_retry_on_startup": True,
        "redis_socket_keepalive": True,
        "redis_backend_health_check_interval": HEALTH_CHECK_INTERVAL,
        "result_backend_always_retry": True,
        "result_backend_max_retries": 10,
        "task_track_started": False,
        "result_extended": True,
        "result_expires": int(settings.result_expires),
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "worker_soft_shutdown_timeout": SOFT_SHUTDOWN_SECONDS,
        "worker_enable_soft_shutdown_on_idle": True,
        "task_soft_time_limit": settings.soft_time_limit,
        "task_time_limit": settings.time_limit,
        "task_default_queue": SHARED_QUEUE,
        "task_default_priority": celery_priority(None),
        "task_routes": {RUN_JOB: {"queue": SHARED_QUEUE, "priority": celery_priority(None)}},
        "task_create_missing_queues": True,
    }
    config.update(_tls_options(settings))
    if uses_sentinel(settings.broker_url):
        transport.update(_sentinel_options(settings))
    if uses_sentinel(settings.result_backend):
        config["result_backend_transport_options"].update(_sentinel_options(settings))
    return config


def _sentinel_options(settings: Settings) -> dict[str, Any]:
    """The master's name, and the sentinels' own password if they have one (kombu and Celery
    pass ``sentinel_kwargs`` to the connections to the sentinels only)."""
    options: dict[str, Any] = {"master_name": settings.sentinel_master}
    kwargs = sentinel_kwargs(settings)
    if kwargs is not None:
        options["sentinel_kwargs"] = kwargs
    return options


def _tls_options(settings: Settings) -> dict[str, Any]:
    """Verified TLS for a ``rediss://`` URL (unless its query string chose) or sentinels with
    ``sentinel_tls`` (Celery insists on an explicit ``ssl_cert_reqs``)."""
    options: dict[str, Any] = {}
    if uses_tls(settings, settings.broker_url) and not url_sets_tls(settings.broker_url):
        options["broker_use_ssl"] = tls_options(settings)
    if uses_tls(settings, settings.result_backend) and not url_sets_tls(settings.result_backend):
        options["redis_backend_use_ssl"] = tls_options(settings)
    return options
