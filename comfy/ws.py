"""``EventStream``: the ComfyUI WebSocket (``/ws?clientId=...``) as a stream of typed events.

Execution events go only to the socket whose ``clientId`` is the prompt's ``client_id``, and they
are not buffered for a disconnected socket: connect *before* submitting, and after a reconnect
ask ComfyUI (``ComfyClient.lookup``) what was missed. Reconnecting with the same ``clientId``
resumes delivery of the running prompt's events.
"""

from __future__ import annotations

import json
from urllib.parse import quote, urlsplit, urlunsplit

import websocket

from comfyfarm.comfy.errors import ComfyUnavailable
from comfyfarm.comfy.events import Event, parse_binary, parse_text

_MIN_TIMEOUT = 0.001


def websocket_url(base_url: str, client_id: str) -> str:
    """``http://h:p/x`` → ``ws://h:p/x/ws?clientId=...`` (``https`` → ``wss``)."""
    parts = urlsplit(base_url.rstrip("/"))
    scheme = "wss" if parts.scheme == "https" else "ws"
    query = f"clientId={quote(client_id, safe='')}"
    return urlunsplit((scheme, parts.netloc, parts.path + "/ws", query, ""))


class EventStream:
    """One WebSocket to one ComfyUI, with a fixed ``client_id`` (never shared between workers).

    With ``preview_metadata`` the first message we send asks for type-4 preview frames, which
    carry the node and prompt id.
    """

    def __init__(self, base_url: str, client_id: str, *, preview_metadata: bool = True) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self.preview_metadata = preview_metadata
        self.url = websocket_url(base_url, client_id)
        self._ws: websocket.WebSocket | None = None

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
        self._ws = ws

    def receive(self, timeout: float) -> Event | None:
        """The next event, or None if nothing arrived within ``timeout`` seconds.

        Raises ``ComfyUnavailable`` when the socket is closed or dropped (then ``connect`` again).
        """
        ws = self._ws
        if ws is None:
            raise self._unavailable("WebSocket not connected")
        try:
            ws.settimeout(max(timeout, _MIN_TIMEOUT))
            opcode, data = ws.recv_data(control_frame=False)
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
        ws, self._ws = self._ws, None
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
        return ComfyUnavailable(url=self.base_url, reason=reason)
