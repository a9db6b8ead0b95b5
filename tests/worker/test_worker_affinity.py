"""A worker's consume order: its own queues, a starving model, its loaded model, shared, the
rest; and promotion of a model queue whose oldest job waited too long (real Valkey)."""

from __future__ import annotations

import json
import time
import uuid

import redis

from comfyfarm.tasks.routing import SHARED_QUEUE, model_queue, queue_keys, worker_queue
from comfyfarm.worker.affinity import AffinityOrder, apply_order

A, B, C = (model_queue(name) for name in ("a.ckpt", "b.ckpt", "c.ckpt"))


def prompt(ckpt: str) -> dict[str, object]:
    return {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}}}


def make_order(wait: float = 30.0) -> AffinityOrder:
    order = AffinityOrder([worker_queue("w0"), SHARED_QUEUE], name="w0", wait=wait)
    order.set_checkpoints(["a.ckpt", "b.ckpt", "c.ckpt"])
    return order


def test_the_loaded_model_comes_before_shared_work_and_other_models() -> None:
    """Before any job: own, shared, models; after a b job: own, b, shared, then a and c."""
    order = make_order()
    assert order.order()[:2] == [worker_queue("w0"), SHARED_QUEUE]
    assert set(order.order()[2:]) == {A, B, C}
    order.received(prompt("b.ckpt"))
    assert order.order()[:3] == [worker_queue("w0"), B, SHARED_QUEUE]
    assert set(order.order()[3:]) == {A, C}
    assert order.loaded == ["b.ckpt"]


def test_workers_spread_over_models_and_leave_those_loaded_elsewhere_last() -> None:
    """The other models come in a rotation that differs between workers; a model another
    worker has loaded comes last."""
    firsts = set()
    for index in range(12):
        order = AffinityOrder([worker_queue(f"w{index}")], name=f"w{index}", wait=30.0)
        order.set_checkpoints(["a.ckpt", "b.ckpt", "c.ckpt"])
        firsts.add(order.order()[2])
        order.elsewhere = {order.order()[2]}
        assert order.order()[-1] not in order.order()[2:-1] and order.order()[-1] in order.elsewhere
    assert len(firsts) > 1


def test_a_model_queue_whose_oldest_job_waited_too_long_is_promoted(redis_url: str) -> None:
    """c's oldest job waited 10 s > wait 5 s: c moves ahead of the loaded b, and one claim keeps
    a second worker from promoting it too; taking a c job ends the promotion."""
    rds = redis.Redis.from_url(redis_url)
    prefix = f"aff-{uuid.uuid4().hex[:8]}:"
    message = {"headers": {"comfyfarm": {"enqueued_at": time.time() - 10}}, "body": ""}
    rds.lpush(queue_keys(prefix, C)[5], json.dumps(message))
    first, second = make_order(wait=5.0), make_order(wait=5.0)
    second.name = "w1"
    for order in (first, second):
        order.received(prompt("b.ckpt"))
        order.check_starving(rds, prefix)
    assert first.order() == [worker_queue("w0"), C, B, SHARED_QUEUE, A]
    assert second.promoted is None
    first.received(prompt("c.ckpt"))
    assert first.promoted is None and first.order()[1] == C


def test_apply_order_resubscribes_from_the_first_queue_out_of_place() -> None:
    """Queues before the first difference stay; the rest are cancelled and added in order."""
    calls: list[tuple[str, str]] = []

    class Consumer:
        def cancel_task_queue(self, queue: str) -> None:
            calls.append(("cancel", queue))

        def add_task_queue(self, queue: str) -> None:
            calls.append(("add", queue))

    now = apply_order(Consumer(), ["own", "shared", "a", "b"], ["own", "b", "shared", "a"])
    assert now == ["own", "b", "shared", "a"]
    assert calls == [("cancel", "shared"), ("cancel", "a"), ("cancel", "b"),
                     ("add", "b"), ("add", "shared"), ("add", "a")]  # fmt: skip
