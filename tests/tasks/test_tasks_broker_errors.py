"""redis-py's "No master found" (a client repr per sentinel) becomes one readable line."""

from __future__ import annotations

import pytest
from redis.sentinel import MasterNotFoundError, Sentinel

from comfyfarm.services import free_port
from comfyfarm.tasks.broker_errors import describe_broker_error


def _no_master(ports: list[int]) -> MasterNotFoundError:
    """The real error of redis-py asking sentinels that are not there."""
    sentinel = Sentinel([("127.0.0.1", port) for port in ports], socket_connect_timeout=2)
    with pytest.raises(MasterNotFoundError) as caught:
        sentinel.discover_master("farm")
    return caught.value


def test_one_reason_from_every_sentinel_is_said_once() -> None:
    ports = [free_port(), free_port()]
    error = _no_master(ports)
    assert len(str(error)) > 1000  # what redis-py says: a whole client repr per sentinel
    line = describe_broker_error(error)
    assert line.startswith("no sentinel named a master for 'farm': every sentinel (")
    assert all(f"127.0.0.1:{port}" in line for port in ports)
    assert line.count("Connection refused") == 1 and "redis.client" not in line
    assert len(line) < 300


def test_other_errors_are_left_as_they_are() -> None:
    error = ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
    assert describe_broker_error(error) == str(error)
