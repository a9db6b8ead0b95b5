"""A requests transport adapter that answers from a table: HTTP mapping tests without a server."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

BASE = "http://comfy.test"


@dataclass
class Answer:
    status: int = 200
    body: Any = None  # dict/list → JSON; str/bytes → as is
    content_type: str | None = None

    def encode(self) -> tuple[bytes, str]:
        if isinstance(self.body, bytes):
            return self.body, self.content_type or "application/octet-stream"
        if isinstance(self.body, str):
            return self.body.encode(), self.content_type or "text/plain; charset=utf-8"
        if self.body is None:
            return b"", self.content_type or ""
        return json.dumps(
            self.body
        ).encode(), self.content_type or "application/json; charset=utf-8"


Handler = Answer | Callable[[requests.PreparedRequest], Answer]


@dataclass
class FakeComfy(BaseAdapter):
    """Routes ``(method, path)`` to answers; unknown routes are 404 like aiohttp."""

    routes: dict[tuple[str, str], Handler] = field(default_factory=dict)
    requests: list[requests.PreparedRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.requests.append(request)
        path = urlsplit(request.url).path
        handler = self.routes.get((request.method or "GET", path))
        if handler is None:
            answer = Answer(404, "404: Not Found")
        else:
            answer = handler(request) if callable(handler) else handler
        content, content_type = answer.encode()
        response = requests.Response()
        response.status_code = answer.status
        response.headers = CaseInsensitiveDict(
            {"Content-Type": content_type} if content_type else {}
        )
        response.raw = io.BytesIO(content)
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        pass

    def calls(self, method: str, path: str) -> list[requests.PreparedRequest]:
        return [r for r in self.requests if r.method == method and urlsplit(r.url).path == path]

    def json_bodies(self, method: str, path: str) -> list[Any]:
        return [json.loads(r.body) for r in self.calls(method, path)]


def session_for(fake: FakeComfy) -> requests.Session:
    session = requests.Session()
    session.mount(BASE, fake)
    return session
