"""A throwaway HTTP server on loopback for tests that fetch by URL (inputs, models)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: Answers one GET: (status, headers, body) — ``body`` may be a callable writing to the socket.
Answer = tuple[int, dict[str, str], Any]


@dataclass
class Served:
    """The server's base URL and the requests it got, as they come: (path, headers) and paths."""

    base: str
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)


@contextmanager
def serve(answer: Callable[[BaseHTTPRequestHandler], Answer]) -> Iterator[Served]:
    """Serve GETs with ``answer`` on 127.0.0.1 until the block ends."""
    served = Served("")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            served.requests.append((self.path, dict(self.headers)))
            served.paths.append(self.path)
            status, headers, body = answer(self)
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            if not callable(body):
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if callable(body):
                body(self.wfile)
            else:
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    served.base = f"http://127.0.0.1:{httpd.server_port}"
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield served
    finally:
        httpd.shutdown()
        httpd.server_close()


def always(body: bytes, headers: dict[str, str] | None = None) -> Callable[[Any], Answer]:
    """An answer: 200 with ``body`` for every path."""
    return lambda handler: (200, dict(headers or {}), body)
