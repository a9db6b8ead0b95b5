"""WorkerRegistry: the health check runs every two seconds, the registry is written only when
what it says changed (one command) or every ``refresh`` seconds (the entry and the index)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from comfyfarm.services import RedisServer
from comfyfarm.tasks.registry import list_workers
from comfyfarm.worker.registry import WorkerRegistry


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def client() -> Iterator[redis.Redis]:
    with RedisServer() as server:
        rds = redis.Redis.from_url(server.url)
        yield rds
        rds.close()


def calls(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    counted = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
    return {name: n for name, n in counted.items() if name in ("set", "zadd")}


def test_beats_write_only_changes_and_a_regular_refresh(client: redis.Redis) -> None:
    clock = Clock()
    registry = WorkerRegistry(
        client, "reg:", "gpu0", comfy_url="http://gpu0", queues=["q"], capabilities=[],
        holding=lambda: [], refresh=10.0, clock=clock,
    )  # fmt: skip
    client.config_resetstat()

    registry.beat(True)  # the first: entry and index
    assert calls(client) == {"set": 1, "zadd": 1}
    for _ in range(4):  # four checks in the next 8 s, nothing changed: nothing written
        clock.now += 2
        registry.beat(True)
    assert calls(client) == {"set": 1, "zadd": 1}
    clock.now += 1
    registry.beat(False)  # ComfyUI went down: said at once, one command
    assert calls(client) == {"set": 2, "zadd": 1}
    assert [w.health for w in list_workers(client, "reg:")] == ["down"]
    clock.now += 1
    registry.beat(False)  # 10 s since the last regular write: entry and index again
    assert calls(client) == {"set": 3, "zadd": 2}
