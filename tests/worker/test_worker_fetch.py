"""Inputs by URL: no way into the worker's network (SSRF), bounded, and fetched once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from comfyfarm.tasks.models import InputFile
from comfyfarm.worker.fetch import FetchError, FetchPolicy, fetch
from comfyfarm.worker.input_cache import InputCache
from comfyfarm.worker.inputs import InputFileError, InputSources, read_input


class Handler(BaseHTTPRequestHandler):
    routes: dict[str, Any] = {}
    hits: list[tuple[str, dict[str, str]]] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.hits.append((self.path, dict(self.headers)))
        route = self.routes.get(self.path.split("?")[0], (404, {}, b""))
        status, headers, body = route(self) if callable(route) else route
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


@pytest.fixture
def server() -> Iterator[tuple[str, type[Handler]]]:
    class Routes(Handler):
        routes: dict[str, Any] = {}
        hits: list[tuple[str, dict[str, str]]] = []

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Routes)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}", Routes
    httpd.shutdown()
    httpd.server_close()


def policy(
    allow: str = "127.0.0.1", *, max_bytes: int = 1 << 20, timeout: float = 10
) -> FetchPolicy:
    return FetchPolicy.parse(allow, max_bytes=max_bytes, timeout=timeout)


def test_loopback_urls_are_refused_by_default_with_node_input_and_clean_url(server: Any) -> None:
    """Without COMFYFARM_INPUT_ALLOW, a loopback URL is refused (not retryable); the error names
    node and input, and shows the URL without credentials or query."""
    base, routes = server
    routes.routes["/a.png"] = (200, {}, b"img")
    url = base.replace("http://", "http://user:pw@") + "/a.png?token=secret"
    item = InputFile(node_id="7", input_name="image", source=url, filename="a.png")
    with pytest.raises(InputFileError) as caught:
        read_input(item, sources=InputSources(policy("")))
    message = str(caught.value)
    assert "non-public address" in message and "7.image" in message
    assert "pw" not in message and "secret" not in message
    assert not caught.value.to_dict()["type"] == "InputUnavailable"
    assert routes.hits == []  # nothing was sent to the refused address


NON_PUBLIC = ["169.254.169.254", "10.0.0.1", "192.168.1.1", "::1", "fd00::1", "0.0.0.0",
              "224.0.0.1", "::ffff:127.0.0.1"]  # fmt: skip


@pytest.mark.parametrize("address", NON_PUBLIC)
def test_non_public_addresses_are_not_permitted(address: str) -> None:
    """Link-local (cloud metadata), private, unique-local, unspecified, multicast and
    IPv4-mapped loopback addresses are refused; a public address is permitted."""
    assert not policy("").permits("example", address)
    assert policy("").permits("example", "93.184.216.34")


def test_an_allowed_network_or_host_is_permitted() -> None:
    """COMFYFARM_INPUT_ALLOW takes CIDR networks and host names."""
    allow = policy("10.0.0.0/8, files.internal")
    assert allow.permits("x", "10.1.2.3")
    assert allow.permits("files.internal", "192.168.0.9")
    assert not allow.permits("other", "192.168.0.9")


def test_a_redirect_to_a_refused_address_is_refused(server: Any) -> None:
    """Redirects are followed hop by hop, each checked: 127.0.0.1 allowed, 127.0.0.2 not."""
    base, routes = server
    port = base.rsplit(":", 1)[1]
    routes.routes["/r"] = (302, {"Location": f"http://127.0.0.2:{port}/a.png"}, b"")
    with pytest.raises(FetchError) as caught:
        fetch(base + "/r", policy("127.0.0.1"))
    assert "127.0.0.2" in caught.value.reason and not caught.value.retryable


def test_size_cap_and_total_deadline(server: Any) -> None:
    """A body over the cap is refused; a trickle is cut at the total deadline, not per read."""
    base, routes = server
    routes.routes["/big"] = (200, {}, b"x" * 5000)

    def trickle(out: Any) -> None:
        for _ in range(40):
            out.write(b"x" * 10)
            out.flush()
            time.sleep(0.1)

    routes.routes["/slow"] = (200, {"Content-Length": "400"}, trickle)
    with pytest.raises(FetchError, match="limit"):
        b"".join(fetch(base + "/big", policy(max_bytes=1000)).chunks(100))
    started = time.monotonic()
    with pytest.raises(FetchError, match="longer than"):
        b"".join(fetch(base + "/slow", policy(timeout=1.0)).chunks(10))
    assert time.monotonic() - started < 3.5


def test_the_cache_revalidates_and_stores_bytes_once(server: Any, tmp_path: Path) -> None:
    """A URL seen before is asked with If-None-Match; 304 serves the cached bytes without a
    transfer. Two URLs with the same bytes share one blob."""
    base, routes = server

    def etagged(handler: Handler) -> tuple[int, dict[str, str], bytes]:
        if handler.headers.get("If-None-Match") == '"v1"':
            return 304, {"ETag": '"v1"'}, b""
        return 200, {"ETag": '"v1"'}, b"same-bytes"

    routes.routes["/e.png"] = etagged
    routes.routes["/copy.png"] = (200, {}, b"same-bytes")
    cache = InputCache(tmp_path, max_bytes=1 << 20)
    assert cache.get(base + "/e.png", policy()) == b"same-bytes"
    assert cache.get(base + "/e.png", policy()) == b"same-bytes"
    assert cache.transfers == 1
    assert routes.hits[-1][1].get("If-None-Match") == '"v1"'
    cache.get(base + "/copy.png", policy())
    assert len(list((tmp_path / "blobs").iterdir())) == 1
