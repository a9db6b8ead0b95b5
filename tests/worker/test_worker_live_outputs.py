"""OutputAnnouncer on a real Valkey: each output is published at once; the job's list is written
only once an output has waited ``list_after`` (by a timer or the next output), with its TTL set
once, and never when the run ends first (its result carries the outputs)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
import redis

from comfyfarm.tasks.keyspace import job_outputs_key, live_channel
from comfyfarm.tasks.models import OutputRecord
from comfyfarm.tasks.settings import Settings
from comfyfarm.worker.live_outputs import OutputAnnouncer

T = TypeVar("T")


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


def wait_until(condition: Callable[[], T], timeout: float = 5.0) -> T:
    """Poll ``condition`` (a Redis list: no event says it was written) until it is truthy."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
    return value


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(broker_url=redis_url, key_prefix=f"live-{uuid.uuid4().hex[:8]}:",
                    result_expires=600)  # fmt: skip


@pytest.fixture
def client(redis_url: str) -> Iterator[FlakyRedis]:
    flaky = FlakyRedis.from_url(redis_url)
    yield flaky
    flaky.close()


def calls(client: redis.Redis, command: str) -> int:
    return int(client.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))


def listed(client: redis.Redis, settings: Settings, job_id: str) -> list[int]:
    key = job_outputs_key(settings.key_prefix, job_id)
    return [json.loads(raw)["index"] for raw in client.lrange(key, 0, -1)]


def test_outputs_are_published_at_once_and_dropped_unlisted_when_the_run_ends(
    client: FlakyRedis, settings: Settings
) -> None:
    """Outputs stored shortly before the job's end: one PUBLISH each, the record in the
    message, and no list at all (the result, written next, carries them)."""
    job_id = str(uuid.uuid4())
    watcher = client.pubsub()
    watcher.subscribe(live_channel(settings.key_prefix))
    assert watcher.get_message(timeout=5) is not None  # the subscribe confirmation
    before = {command: calls(client, command) for command in ("rpush", "expire", "publish")}

    announce = OutputAnnouncer(client, settings, job_id, list_after=60)
    for index in range(3):
        announce(text_output(index))
        message = watcher.get_message(timeout=5)
        assert message is not None and message["type"] == "message"
        assert json.loads(message["data"]) == {"job_id": job_id,
                                               "output": text_output(index).to_dict()}  # fmt: skip
    announce.close()

    after = {command: calls(client, command) for command in ("rpush", "expire", "publish")}
    assert {command: after[command] - before[command] for command in after} == {
        "rpush": 0, "expire": 0, "publish": 3,
    }  # fmt: skip
    assert not client.exists(job_outputs_key(settings.key_prefix, job_id))
    watcher.close()


def test_an_output_that_waited_is_listed_with_those_after_it(
    client: FlakyRedis, settings: Settings
) -> None:
    """A late reader misses an output at most ``list_after`` (+ a round trip): the timer lists
    it; the outputs after it wait their turn, and the TTL is set once."""
    job_id = str(uuid.uuid4())
    before = calls(client, "expire")
    announce = OutputAnnouncer(client, settings, job_id, list_after=0.3)

    announced_at = time.monotonic()
    announce(text_output(0))
    wait_until(lambda: listed(client, settings, job_id), timeout=0.3 + 1.0)
    assert time.monotonic() - announced_at >= 0.3
    announce(text_output(1))
    announce(text_output(2))
    assert listed(client, settings, job_id) == [0]  # not yet waited
    assert wait_until(lambda: listed(client, settings, job_id)[1:], timeout=0.3 + 1.0) == [1, 2]

    assert calls(client, "expire") - before == 1
    assert 0 < int(client.ttl(job_outputs_key(settings.key_prefix, job_id))) <= 600
    announce.close()


def test_a_closed_run_lists_nothing_more(client: FlakyRedis, settings: Settings) -> None:
    """``close`` stops the timer: an output still waiting then is never listed (another run
    announced after it is listed, so its timer had its time)."""
    ended, running = str(uuid.uuid4()), str(uuid.uuid4())
    first = OutputAnnouncer(client, settings, ended, list_after=0.2)
    second = OutputAnnouncer(client, settings, running, list_after=0.2)

    first(text_output(0))
    second(text_output(0))
    first.close()

    wait_until(lambda: listed(client, settings, running))
    assert listed(client, settings, ended) == []
    second.close()


def test_an_output_redis_failed_to_announce_is_still_listed(
    client: FlakyRedis, settings: Settings
) -> None:
    """A Redis blip loses the announcement of one output (logged, not raised), not its place
    in the list: it waits with the others, listed once the timer comes."""
    job_id = str(uuid.uuid4())
    announce = OutputAnnouncer(client, settings, job_id, list_after=0.2)

    assert announce.offer(text_output(0))
    client.down = True
    assert not announce.offer(text_output(1))
    assert announce.offer(text_output(2))

    assert wait_until(lambda: listed(client, settings, job_id)) == [0, 1, 2]
    assert int(client.ttl(job_outputs_key(settings.key_prefix, job_id))) > 0
    announce.close()
