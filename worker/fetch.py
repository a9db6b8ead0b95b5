"""Fetching an input by URL without becoming a proxy into the worker's network (SSRF).

A job's input URL comes from whoever can enqueue a job. Fetched blindly, ``http://127.0.0.1:8188``
reaches the worker's own ComfyUI, ``http://169.254.169.254`` the cloud's metadata service (with
its credentials), ``http://10.0.0.5`` anything on the private network. So:

- the address a connection actually reaches is checked after DNS, on the connected socket (a
  name that resolves to a public address at first and a private one later gains nothing);
- loopback, private, link-local, unique-local, multicast, reserved and unspecified addresses are
  refused unless ``COMFYFARM_INPUT_ALLOW`` names them (hosts, IPs or CIDR networks);
- redirects are followed by us (at most 5), each hop checked like the first;
- proxies from the environment are ignored (they would hide the real destination);
- the body is capped in size and the whole download (all hops) in time, not just each read;
- messages name the URL without its credentials or query string.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

MAX_REDIRECTS = 5
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class FetchError(Exception):
    """Raised when a URL is refused or its body cannot be fetched; ``retryable`` for network
    errors, timeouts, 429 and 5xx."""

    def __init__(self, reason: str, *, retryable: bool = False) -> None:
        self.reason = reason
        self.retryable = retryable
        super().__init__(reason)


@dataclass(frozen=True)
class FetchPolicy:
    """What may be fetched: size cap, total time, and the non-public addresses allowed."""

    max_bytes: int
    timeout: float
    allow_hosts: frozenset[str] = frozenset()
    allow_networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, allow: str, *, max_bytes: int, timeout: float) -> FetchPolicy:
        """``allow``: comma-separated hosts, IPs and CIDR networks (``COMFYFARM_INPUT_ALLOW``)."""
        hosts, networks = set(), []
        for word in (w.strip() for w in allow.split(",")):
            if not word:
                continue
            try:
                networks.append(ipaddress.ip_network(word, strict=False))
            except ValueError:
                hosts.add(word.lower().rstrip("."))
        return cls(max_bytes, timeout, frozenset(hosts), tuple(networks))

    def permits(self, host: str, address: str) -> bool:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if ip.is_global and not ip.is_multicast:
            return True
        if host.lower().rstrip(".") in self.allow_hosts:
            return True
        return any(ip in network for network in self.allow_networks)


def display_url(url: str) -> str:
    """The URL for messages and logs: no user, password, query or fragment."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:
        return "(unparsable URL)"


def fetch(url: str, policy: FetchPolicy, headers: dict[str, str] | None = None) -> FetchedBody:
    """GET ``url`` under ``policy``; the body is read with ``FetchedBody.chunks``."""
    deadline = time.monotonic() + policy.timeout
    session = _guarded_session(policy)
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        parts = urlsplit(current)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            shown = display_url(current)
            raise FetchError(f"only http(s) URLs with a host can be fetched: {shown}")
        _check_resolved(parts.hostname, parts.port, policy)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchError(f"no answer within {policy.timeout:g} s", retryable=True)
        try:
            response = session.get(
                current, headers=headers, stream=True, allow_redirects=False,
                timeout=(min(remaining, 10.0), min(remaining, 30.0)),
            )  # fmt: skip
        except _Refused as exc:
            raise FetchError(str(exc)) from exc
        except requests.RequestException as exc:
            refused = _refusal_in(exc)
            if refused is not None:
                raise FetchError(str(refused)) from exc
            raise FetchError(f"{type(exc).__name__} fetching {display_url(current)}",
                             retryable=True) from exc  # fmt: skip
        if response.is_redirect:
            location = response.headers.get("Location", "")
            response.close()
            current = urljoin(current, location)
            continue
        return FetchedBody(response, policy, deadline, display_url(url))
    raise FetchError(f"more than {MAX_REDIRECTS} redirects from {display_url(url)}")


class FetchedBody:
    """An answered GET: ``status``, ``headers`` and the capped, deadline-bound body."""

    def __init__(
        self, response: requests.Response, policy: FetchPolicy, deadline: float, shown: str
    ) -> None:
        self.response = response
        self.status = response.status_code
        self.headers = response.headers
        self._policy = policy
        self._deadline = deadline
        self._shown = shown

    def raise_for_status(self) -> None:
        if self.status >= 500 or self.status == 429:
            self.close()
            raise FetchError(f"HTTP {self.status} from {self._shown}", retryable=True)
        if self.status >= 400:
            self.close()
            raise FetchError(f"HTTP {self.status} from {self._shown}")

    def chunks(self, size: int = 1 << 16) -> Iterator[bytes]:
        total = 0
        try:
            for chunk in self.response.iter_content(size):
                total += len(chunk)
                if total > self._policy.max_bytes:
                    limit = self._policy.max_bytes
                    raise FetchError(f"{self._shown} is over the {limit}-byte limit")
                if time.monotonic() > self._deadline:
                    raise FetchError(f"{self._shown} took longer than {self._policy.timeout:g} s",
                                     retryable=True)  # fmt: skip
                yield chunk
        except requests.RequestException as exc:
            raise FetchError(f"{type(exc).__name__} reading {self._shown}", retryable=True) from exc
        finally:
            self.close()

    def close(self) -> None:
        self.response.close()


# -- the guards: before connecting (all resolved addresses), and on the connected socket ---------


def _check_resolved(host: str, port: int | None, policy: FetchPolicy) -> None:
    try:
        infos = socket.getaddrinfo(host, port or 80, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise FetchError(f"cannot resolve {host}: {exc}", retryable=True) from exc
    for info in infos:
        address = str(info[4][0])
        if not policy.permits(host, address):
            raise FetchError(
                f"{host} resolves to {address}, a non-public address: refused "
                "(COMFYFARM_INPUT_ALLOW can name hosts or networks to allow)"
            )


class _Refused(requests.ConnectionError):
    """The connection reached an address the policy does not permit."""


def _refusal_in(exc: BaseException) -> _Refused | None:
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return None
        if isinstance(seen, _Refused):
            return seen
        reason = getattr(seen, "reason", None)
        seen = reason if isinstance(reason, BaseException) else (seen.__context__ or seen.__cause__)
    return None


def _guard(connection: Any, policy: FetchPolicy) -> None:
    peer = connection.sock.getpeername()[0] if connection.sock else ""
    if not policy.permits(connection.host, peer):
        connection.sock.close()
        raise _Refused(
            f"{connection.host} resolves to {peer}, a non-public address: refused "
            "(COMFYFARM_INPUT_ALLOW can name hosts or networks to allow)"
        )


def _guarded_session(policy: FetchPolicy) -> requests.Session:
    class GuardedHTTP(HTTPConnection):
        def connect(self) -> None:
            super().connect()
            _guard(self, policy)

    class GuardedHTTPS(HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            _guard(self, policy)

    class HTTPPool(HTTPConnectionPool):
        ConnectionCls = GuardedHTTP

    class HTTPSPool(HTTPSConnectionPool):
        ConnectionCls = GuardedHTTPS

    class GuardedAdapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {"http": HTTPPool, "https": HTTPSPool}
            self.poolmanager.key_fn_by_scheme = dict(self.poolmanager.key_fn_by_scheme)

    session = requests.Session()
    session.trust_env = False  # no proxies or .netrc from the environment
    adapter = GuardedAdapter(max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
