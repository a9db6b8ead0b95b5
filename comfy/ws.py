"""``EventStream``: the ComfyUI WebSocket (``/ws?clientId=...``) as a stream of typed events.

Execution events go only to the socket whose ``clientId`` is the prompt's ``client_id``, and they
are not buffered for a disconnected socket: connect *before* submitting, and after a reconnect
ask ComfyUI (``ComfyClient.lookup``) what was missed. Reconnecting with the same ``clientId``
resumes delivery of the running prompt's events.

The server is untrusted: a frame header may announce 2**40 bytes, a frame may arrive one byte a
second. ``_BoundedReads`` sits under websocket-client's frame reader: a frame (or a message of
continuation frames) longer than ``max_frame_bytes`` drops the socket before its payload is read
(``ComfyUnavailable``; the tracker reconnects and asks ComfyUI over HTTP), and ``receive(timeout)``
returns within ``timeout`` however the bytes trickle (a partial frame is kept for the next call).
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import websocket

from comfyfarm.comfy.errors import ComfyUnavailable
from comfyfarm.comfy.events import Event, parse_binary, parse_text
from comfyfarm.comfy.limits import DEFAULT_MAX_WS_FRAME_BYTES
from comfyfarm.tasks.redact import redact_url

_MIN_TIMEOUT = 0.001


def websocket_url(base_url: str, client_id: str) -> str:
    """``http://h:p/x`` → ``ws://h:p/x/ws?clientId=...`` (``https`` → ``wss``)."""
    parts = urlsplit(base_url.rstrip("/"))
    scheme = "wss" if parts.scheme == "https" else "ws"
    query = f"clientId={quote(client_id, safe='')}"
    return urlunsplit((scheme, parts.netloc, parts.path + "/ws", query, ""))


class FrameTooLarge(websocket.WebSocketException):
    """Raised (inside ``EventStream.receive``) when a frame or message exceeds the limit."""


#: Bytes of frame headers a message may carry beyond its payload (2 + 8 + 4 per frame).
_HEADER_SLACK = 14


class _BoundedReads:
    """Wraps the frame reader of one websocket-client socket: every socket read is bounded by
    ``end`` (a ``time.monotonic()`` time) and the bytes of one message by ``max_bytes``."""

    def __init__(self, ws: websocket.WebSocket, max_bytes: int) -> None:
        self.ws = ws
        self.max_bytes = max_bytes
        self.end: float | None = None
        self.received = 0
        reader: Any = ws.frame_buffer
        self._recv = reader.recv
        self._recv_strict = reader.recv_strict
        # The reader looks both up on itself for every read, so these take their place.
        reader.recv = self.recv
        reader.recv_strict = self.recv_strict

    def recv(self, bufsize: int) -> bytes:
        if self.end is not None:
            remaining = self.end - time.monotonic()
            if remaining <= 0:
                raise websocket.WebSocketTimeoutException("read time is up")
            if self.ws.sock is not None:
                self.ws.sock.settimeout(remaining)
        data: bytes = self._recv(bufsize)
        self.received += len(data)
        if self.received > self.max_bytes + _HEADER_SLACK:
            raise self._too_large(self.received)
        return data

    def recv_strict(self, bufsize: int) -> bytes:
        if bufsize > self.max_bytes:  # the announced payload length: refused before reading it
            raise self._too_large(bufsize)
        data: bytes = self._recv_strict(bufsize)
        return data

    def message_done(self) -> None:
        self.received = 0

    def _too_large(self, size: int) -> FrameTooLarge:
        return FrameTooLarge(
            f"frame of {size} bytes exceeds {self.max_bytes} (COMFYFARM_MAX_WS_FRAME_BYTES)"
        )


class EventStream:
    """One WebSocket to one ComfyUI, with a fixed ``client_id`` (never shared between workers).

    With ``preview_metadata`` the first message we send asks for type-4 preview frames, which
    carry the node and prompt id. A message longer than ``max_frame_bytes`` drops the socket.
    """

    def __init__(
        self,
        base_url: str,
        client_id: str,
        *,
        preview_metadata: bool = True,
        max_frame_bytes: int = DEFAULT_MAX_WS_FRAME_BYTES,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self.preview_metadata = preview_metadata
        self.max_frame_bytes = max_frame_bytes
        self.url = websocket_url(base_url, client_id)
        self._ws: websocket.WebSocket | None = None
        self._reads: _BoundedReads | None = None

    @property
    def connected(self) -> bool:
        return self._ws is not None

    def connect(self, timeout: float = 10.0) -> None:
        """Open (or re-open) the socket; raises ``ComfyUnavailable`` if ComfyUI is not there."""
        self.close()
        try:
            ws = websocket.create_connection(
                self.url,
                timeout=timeout,
                skip_utf8_validation=True,  # we decode leniently ourselves; bad text is Unknown
                suppress_origin=True,  # not a browser: ComfyUI's origin check has nothing to match
                enable_multithread=False,
            )
        except (websocket.WebSocketException, OSError) as exc:
            raise self._unavailable(
                f"cannot connect WebSocket: {exc or type(exc).__name__}"
            ) from exc
        try:
            if self.preview_metadata:
                message = {"type": "feature_flags", "data": {"supports_preview_metadata": True}}
                ws.send(json.dumps(message))
        except (websocket.WebSocketException, OSError) as exc:
            ws.shutdown()  # type: ignore[no-untyped-call]  # websocket-client leaves it untyped
            raise self._unavailable(f"WebSocket dropped while connecting: {exc}") from exc
        self._reads = _BoundedReads(ws, self.max_frame_bytes)
        self._ws = ws

    def receive(self, timeout: float) -> Event | None:
        """The next event, or None if nothing arrived within ``timeout`` seconds.

        Raises ``ComfyUnavailable`` when the socket is closed or dropped, or a message is too
        large (then ``connect`` again).
        """
        ws, reads = self._ws, self._reads
        if ws is None or reads is None:
            raise self._unavailable("WebSocket not connected")
        try:
            reads.end = time.monotonic() + max(timeout, _MIN_TIMEOUT)
            ws.settimeout(max(timeout, _MIN_TIMEOUT))
            opcode, data = ws.recv_data(control_frame=False)
            reads.message_done()
        except (websocket.WebSocketTimeoutException, TimeoutError):
            return None
        except (websocket.WebSocketException, OSError, ValueError) as exc:
            self.close()
            reason = str(exc) or type(exc).__name__
            raise self._unavailable(f"WebSocket dropped: {reason}") from exc
        if opcode == websocket.ABNF.OPCODE_TEXT:
            return parse_text(bytes(data).decode("utf-8", errors="replace"))
        if opcode == websocket.ABNF.OPCODE_BINARY:
            return parse_binary(bytes(data))
        self.close()  # OPCODE_CLOSE: the server said goodbye
        raise self._unavailable("WebSocket closed by the server")

    def close(self) -> None:
        """Drop the socket without waiting for the server (safe to call twice)."""
        ws, self._ws, self._reads = self._ws, None, None
        if ws is None:
            return
        try:
            ws.send_close()
        except (websocket.WebSocketException, OSError):
            pass  # already gone
        ws.shutdown()  # type: ignore[no-untyped-call]

    def __enter__(self) -> EventStream:
        if self._ws is None:
            self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _unavailable(self, reason: str) -> ComfyUnavailable:
        return ComfyUnavailable(url=redact_url(self.base_url), reason=reason)
