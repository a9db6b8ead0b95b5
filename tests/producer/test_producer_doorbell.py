"""Submitting rings the queue's doorbell after the messages are in it (no worker running)."""

from __future__ import annotations

import redis
from producer_helpers import PROMPT, all_messages

from comfyfarm.producer import Farm
from comfyfarm.tasks.doorbell import bell_key
from comfyfarm.tasks.routing import SHARED_QUEUE, worker_queue


def test_each_job_sent_leaves_one_token_on_its_queues_doorbell(farm: Farm, rds: redis.Redis):
    """One token per job, on the doorbell of the queue the job went to, chunk by chunk."""
    prefix = farm.settings.key_prefix
    farm.submit_many([PROMPT] * 20, chunk_size=8)
    farm.submit(PROMPT, queue=worker_queue("w1"))

    assert len(all_messages(rds, prefix, SHARED_QUEUE)) == 20
    assert rds.llen(prefix + bell_key(SHARED_QUEUE)) == 20
    assert rds.llen(prefix + bell_key(worker_queue("w1"))) == 1
