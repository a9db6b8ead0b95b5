"""WebSocket clients and message routing, like ComfyUI's ``PromptServer.send``/``send_sync``.

A message addressed to a client id goes to the socket currently registered under that id (a
reconnect with the same ``clientId`` takes over); a message addressed to ``None`` goes to every
socket. Messages are queued and sent by one publisher task, so the executor never waits on a
slow client and every socket sees messages in the order they were produced.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

# Binary frame types (ComfyUI protocol.BinaryEventTypes).
PREVIEW_IMAGE = 1
PREVIEW_IMAGE_WITH_METADATA = 4
PNG_FORMAT = 2

SERVER_FEATURES: dict[str, Any] = {"supports_preview_metadata": True, "max_upload_size": 104857600}


@dataclass
class Client:
    """One connected socket and what it announced in its feature_flags message."""

    ws: web.WebSocketResponse
    request: web.Request
    feature_flags: dict[str, Any] = field(default_factory=dict)


class Hub:
    """The sockets, plus the server-wide 'current client' ComfyUI keeps for reconnects."""

    def __init__(self) -> None:
        self.clients: dict[str, Client] = {}
        self.client_id: str | None = None  # client of the prompt executing (or last executed)
        self.last_node_id: str | None = None  # node executing now, re-sent on reconnect
        self._outbox: asyncio.Queue[tuple[str | int, Any, str | None]] = asyncio.Queue()

    def send_sync(self, event: str | int, data: Any, sid: str | None = None) -> None:
        """Queue a message: text events are ``{"type", "data"}``, int events are binary frames."""
        self._outbox.put_nowait((event, data, sid))

    def supports_preview_metadata(self, sid: str | None) -> bool:
        client = self.clients.get(sid) if sid is not None else None
        return bool(client and client.feature_flags.get("supports_preview_metadata"))

    async def publish_forever(self) -> None:
        while True:
            event, data, sid = await self._outbox.get()
            await self.send(event, data, sid)

    async def send(self, event: str | int, data: Any, sid: str | None) -> None:
        if isinstance(event, int):
            payload: str | bytes = struct.pack(">I", event) + data
        else:
            payload = json.dumps({"type": event, "data": data})
        if sid is None:
            targets = list(self.clients.values())
        else:
            client = self.clients.get(sid)
            targets = [client] if client is not None else []
        for client in targets:
            try:
                if isinstance(payload, bytes):
                    await client.ws.send_bytes(payload)
                else:
                    await client.ws.send_str(payload)
            except (ConnectionError, RuntimeError) as err:
                log.debug("send error: %s", err)

    def register(self, sid: str, client: Client) -> None:
        self.clients[sid] = client

    def unregister(self, sid: str, client: Client) -> None:
        # ComfyUI pops the id unconditionally, which can evict a socket that reconnected with
        # the same id before the old handler finished; we only remove our own entry.
        if self.clients.get(sid) is client:
            del self.clients[sid]

    def drop_all(self) -> int:
        """Cut every socket without a close frame (a network failure, as clients see it)."""
        clients = list(self.clients.items())
        self.clients.clear()
        for _, client in clients:
            transport = client.request.transport
            if transport is not None:
                transport.abort()
        return len(clients)


def preview_frame(png: bytes) -> bytes:
    """Body of a type-1 PREVIEW_IMAGE frame (after the event type)."""
    return struct.pack(">I", PNG_FORMAT) + png


def preview_frame_with_metadata(png: bytes, metadata: dict[str, Any]) -> bytes:
    """Body of a type-4 PREVIEW_IMAGE_WITH_METADATA frame (after the event type)."""
    meta = json.dumps(metadata).encode()
    return struct.pack(">I", len(meta)) + meta + png


async def ws_bomb(transport: asyncio.BaseTransport, length: int, trickle_ms: float) -> None:
    """Fault ``ws_bomb``: a raw binary frame header announcing ``length`` payload bytes, then one
    byte every ``trickle_ms`` until the socket closes (the frame never ends)."""
    assert isinstance(transport, asyncio.WriteTransport)
    transport.write(b"\x82\x7f" + struct.pack(">Q", length))
    while not transport.is_closing():
        transport.write(b"\x00")
        await asyncio.sleep(float(trickle_ms) / 1000)
