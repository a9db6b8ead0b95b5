"""What the farm's own Redis client costs a connection (a real Valkey)."""

from __future__ import annotations

from comfyfarm.tasks.connect import redis_client
from comfyfarm.tasks.settings import Settings


def test_a_connection_of_ours_does_not_announce_the_client_library(settings: Settings):
    """No CLIENT SETINFO (LIB-NAME, LIB-VER): two commands fewer on every new connection."""
    client = redis_client(settings)
    try:
        info = client.client_info()
    finally:
        client.close()

    assert info.get("lib-name", "") == ""
    assert info.get("lib-ver", "") == ""
