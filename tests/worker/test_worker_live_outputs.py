"""OutputAnnouncer: each output is appended to the job's live list and announced; the list gets
its TTL with the first output of a run, not with every one (on a real Valkey)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import redis

from comfyfarm.tasks.keyspace import job_outputs_key, live_channel
from comfyfarm.tasks.models import OutputRecord
from comfyfarm.tasks.settings import Settings
from comfyfarm.worker.live_outputs import OutputAnnouncer


def text_output(index: int) -> OutputRecord:
    return OutputRecord(node_id="7", kind="text", index=index, filename="", uri=None, bytes=0,
                        hash="", mime="text/plain", value=f"line {index}")  # fmt: skip


class FlakyRedis(redis.Redis):
    """A client whose next pipeline fails when ``down`` is set, as with a Redis blip."""

    down = False

    def pipeline(self, *args: Any, **kwargs: Any) -> Any:
        if self.down:
            self.down = False
            raise redis.ConnectionError("Redis is restarting")
        return super().pipeline(*args, **kwargs)


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(broker_url=redis_url, key_prefix=f"live-{uuid.uuid4().hex[:8]}:",
                    result_expires=600)  # fmt: skip


def expires(client: redis.Redis) -> int:
    return int(client.info("commandstats").get("cmdstat_expire", {}).get("calls", 0))


def test_outputs_are_listed_and_announced_and_the_ttl_set_once(
    redis_url: str, settings: Settings
) -> None:
    """Three outputs: three entries and three messages, one EXPIRE (2n + 1 commands, not 3n)."""
    client = FlakyRedis.from_url(redis_url)
    job_id = str(uuid.uuid4())
    watcher = client.pubsub()
    watcher.subscribe(live_channel(settings.key_prefix))
    assert watcher.get_message(timeout=5) is not None  # the subscribe confirmation
    before = expires(client)

    announce = OutputAnnouncer(client, settings, job_id)
    for index in range(3):
        announce(text_output(index))

    assert expires(client) - before == 1
    key = job_outputs_key(settings.key_prefix, job_id)
    assert [json.loads(raw)["value"] for raw in client.lrange(key, 0, -1)] == [
        "line 0", "line 1", "line 2",
    ]  # fmt: skip
    assert 0 < int(client.ttl(key)) <= 600
    for index in range(3):
        message = watcher.get_message(timeout=5)
        assert message is not None and message["type"] == "message"
        assert json.loads(message["data"]) == {"job_id": job_id,
                                               "output": text_output(index).to_dict()}  # fmt: skip
    watcher.close()


def test_a_failed_announcement_sets_the_ttl_again_with_the_next(
    redis_url: str, settings: Settings
) -> None:
    """An output lost to a Redis blip is logged, not raised; the next output carries the TTL
    again (the lost pipeline may have made the list without one)."""
    client = FlakyRedis.from_url(redis_url)
    job_id = str(uuid.uuid4())
    before = expires(client)

    announce = OutputAnnouncer(client, settings, job_id)
    announce(text_output(0))
    client.down = True
    announce(text_output(1))  # lost: the result will still list it
    announce(text_output(2))
    announce(text_output(3))

    assert expires(client) - before == 2
    key = job_outputs_key(settings.key_prefix, job_id)
    assert [json.loads(raw)["index"] for raw in client.lrange(key, 0, -1)] == [0, 2, 3]
