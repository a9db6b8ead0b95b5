"""HTTP transport to one ComfyUI: timeouts, route prefix detection, error mapping.

ComfyUI serves every route both as ``/<route>`` and ``/api/<route>``; proxies in front of it may
only forward one of them. The first request probes ``GET /api/prompt`` once and caches the answer.
Whether the server has the newer job API (``/api/jobs``, ComfyUI 2026) is probed the same way.

Mapping: connection errors, timeouts and non-JSON answers where JSON is expected become
``ComfyUnavailable``; 5xx becomes ``ComfyServerError``; other unexpected 4xx ``ComfyRequestError``.

Bodies are untrusted (``comfy.limits``): every answer is read with a size cap
(``ComfyLimits.max_json_bytes``; ``max_output_bytes`` for a ``/view`` file) and within a total
time (``timeout`` for an answer, the caller's deadline for a file), never with ``.json()`` on an
unbounded stream: a ``/history`` of 200 MB is ``ResponseTooLarge``, one trickled a byte at a time
is ``ComfyUnavailable``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from comfyfarm.comfy.errors import ComfyRequestError, ComfyServerError, ComfyUnavailable
from comfyfarm.comfy.limits import BodyLimit, ComfyLimits, read_bounded
from comfyfarm.tasks.redact import redact_url

API_PREFIX = "/api"
_PROBE_ID = "00000000-0000-0000-0000-000000000000"
_BODY_LIMIT = 4000
_READ_CHUNK = 1 << 16


class Transport:
    """Requests to one ComfyUI base URL; every call has ``timeout`` (seconds, connect and read)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        session: requests.Session | None = None,
        limits: ComfyLimits | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        #: ``base_url`` without its password: what errors and logs show (``tasks.redact``).
        self.shown_url = redact_url(self.base_url)
        self.timeout = timeout
        self.limits = limits or ComfyLimits()
        self.session = session or _session()
        self._prefix: str | None = None
        self._has_jobs_api: bool | None = None

    # -- routes -------------------------------------------------------------------------------

    @property
    def prefix(self) -> str:
        """``"/api"`` when the server answers there, else ``""`` (probed once, then cached)."""
        if self._prefix is None:
            response = self._send("GET", self.base_url + API_PREFIX + "/prompt", "/api/prompt")
            self._prefix = API_PREFIX if _is_json_object(response) else ""
        return self._prefix

    @property
    def has_jobs_api(self) -> bool:
        """Whether ``GET /api/jobs/{id}`` exists (ComfyUI with the unified job API).

        Probed with an id nobody uses: the route answers JSON (a job, or a JSON 404), while a
        server without it answers aiohttp's plain-text 404.
        """
        if self._has_jobs_api is None:
            route = self.prefix + "/jobs/" + _PROBE_ID
            response = self._send("GET", self.base_url + route, route)
            if response.status_code >= 500:
                raise _server_error(response)
            content_type = response.headers.get("Content-Type", "")
            self._has_jobs_api = response.status_code in (200, 404) and "json" in content_type
        return self._has_jobs_api

    def url(self, path: str) -> str:
        """Full URL of a route such as ``/history/x`` (with the detected prefix)."""
        return self.base_url + self.prefix + path

    # -- requests -----------------------------------------------------------------------------

    def _send(
        self, method: str, url: str, route: str, *, stream: bool = False, **kwargs: Any
    ) -> requests.Response:
        """Send; the body is read (bounded) before returning, except a 200 when ``stream``."""
        try:
            response = self.session.request(
                method, url, timeout=self.timeout, stream=True, **kwargs
            )
        except requests.Timeout as exc:
            raise ComfyUnavailable(
                url=self.shown_url, reason=f"{method} {route} timed out after {self.timeout} s"
            ) from exc
        except requests.RequestException as exc:
            raise ComfyUnavailable(
                url=self.shown_url, reason=f"{method} {route} failed: {_short(exc)}"
            ) from exc
        if not (stream and response.status_code == 200):
            self._load(response, route)
        return response

    def _load(self, response: requests.Response, route: str) -> None:
        """Read the whole body into ``response`` (at most ``max_json_bytes``, within
        ``timeout`` seconds in total), so ``.json()`` and ``.text`` never read unbounded."""
        limit = BodyLimit(
            max_bytes=self.limits.max_json_bytes,
            setting="COMFYFARM_MAX_JSON_BYTES",
            deadline=time.monotonic() + self.timeout,
            deadline_text=f"{self.timeout:g} s",
        )
        try:
            body = b"".join(
                read_bounded(
                    response, url=self.shown_url, route=route, limit=limit, chunk_size=_READ_CHUNK
                )
            )
        except BaseException:
            response.close()  # drops the connection: its body was not read to the end
            raise
        # requests keeps a read body here; .content, .text and .json() then use it.
        response._content = body
        _release(response)

    def request(
        self, method: str, path: str, *, stream: bool = False, **kwargs: Any
    ) -> requests.Response:
        """Send a request; raises on connection problems and 5xx. 4xx is left to the caller.

        With ``stream`` the body of a 200 is left unread (read it with ``read_bounded``)."""
        response = self._send(method, self.url(path), self.prefix + path, stream=stream, **kwargs)
        if response.status_code >= 500:
            raise _server_error(response)
        return response

    def decode_json(self, response: requests.Response, path: str) -> Any:
        """The JSON body; a non-JSON answer (HTML error page, proxy) is ``ComfyUnavailable``."""
        content_type = response.headers.get("Content-Type", "")
        route = self.prefix + path
        if "json" not in content_type.lower():
            got = content_type.split(";")[0].strip() or "no content type"
            raise ComfyUnavailable(
                url=self.shown_url, reason=f"expected JSON from {route}, got {got}"
            )
        try:
            return response.json()
        except (ValueError, json.JSONDecodeError) as exc:
            raise ComfyUnavailable(
                url=self.shown_url, reason=f"invalid JSON from {route}: {_short(exc)}"
            ) from exc

    def get_json(self, path: str, **kwargs: Any) -> Any:
        """GET a route that answers JSON; 4xx is ``ComfyRequestError``."""
        response = self.request("GET", path, **kwargs)
        if response.status_code != 200:
            raise request_error(response)
        return self.decode_json(response, path)

    def post(self, path: str, body: Any) -> requests.Response:
        """POST JSON to a route that answers with an empty 200 (/queue, /interrupt, /free)."""
        response = self.request("POST", path, json=body)
        if response.status_code != 200:
            raise request_error(response)
        return response

    def stream(
        self,
        path: str,
        params: dict[str, str],
        chunk_size: int,
        *,
        deadline: float | None = None,
    ) -> Iterator[bytes]:
        """GET a binary body chunk by chunk (at most ``max_output_bytes``, done by
        ``deadline``, a ``time.monotonic()`` time); the response is closed when the iterator
        ends."""
        response = self.request("GET", path, params=params, stream=True)
        limit = BodyLimit(
            max_bytes=self.limits.max_output_bytes,
            setting="COMFYFARM_MAX_OUTPUT_BYTES",
            deadline=deadline,
            deadline_text="the job deadline",
        )
        try:
            if response.status_code != 200:
                raise request_error(response)
            yield from read_bounded(
                response,
                url=self.shown_url,
                route=self.prefix + path,
                limit=limit,
                chunk_size=chunk_size,
            )
        except BaseException:
            response.close()  # drops the connection: its body was not read to the end
            raise
        _release(response)

    def close(self) -> None:
        self.session.close()


def _release(response: requests.Response) -> None:
    """Hand the connection of a response read to its end back to the pool (keep-alive);
    ``close()`` of a response requests thinks unread would drop it."""
    response._content_consumed = True
    response.close()


def _session() -> requests.Session:
    """A session that retries GETs once on a stale keep-alive connection or a refused connect.

    POSTs are never retried here: a repeated POST /prompt would queue the prompt twice.
    """
    retry = Retry(
        total=2,
        connect=2,
        read=1,
        status=0,
        other=0,
        allowed_methods=frozenset({"GET"}),
        backoff_factor=0.1,
        raise_on_status=False,
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _is_json_object(response: requests.Response) -> bool:
    if response.status_code != 200 or "json" not in response.headers.get("Content-Type", ""):
        return False
    try:
        return isinstance(response.json(), dict)
    except ValueError:
        return False


def _body(response: requests.Response) -> str:
    try:
        return response.text[:_BODY_LIMIT]
    except (requests.RequestException, UnicodeDecodeError):
        return ""


def _server_error(response: requests.Response) -> ComfyServerError:
    return ComfyServerError(
        url=redact_url(response.url), status=response.status_code, body=_body(response)
    )


def request_error(response: requests.Response) -> ComfyRequestError:
    """The error for an unexpected non-200, non-5xx answer."""
    return ComfyRequestError(
        url=redact_url(response.url), status=response.status_code, body=_body(response)
    )


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 300 else text[:300] + "..."
