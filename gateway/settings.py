"""GatewaySettings: the gateway's own knobs, built explicitly from ``COMFYFARM_…`` variables.

The farm's shared settings (broker, key prefix, storage, retention) stay in
``comfyfarm.tasks.settings.Settings``; these are the ones only the gateway reads. Nothing is read
at import time. ``COMFYFARM_API_TOKENS`` holds secrets: it never appears in ``repr()``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NoReturn

from comfyfarm.tasks.errors import SettingsError
from comfyfarm.tasks.settings import ENV_PREFIX, Settings

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8189
DEFAULT_MAX_QUEUE_DEPTH = 10_000
DEFAULT_MAX_STREAMS = 1_000
DEFAULT_MAX_UPLOAD_BYTES = 1 << 30
MAX_PROCESSES = 64
MAX_TOKEN_PAIRS = 1_000
DEFAULT_PRESIGN_SECONDS = 3600
MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # S3's limit for a presigned URL


@dataclass(frozen=True, repr=False)
class GatewaySettings:
    """``farm``: the shared farm settings; ``tokens``: token → tenant (empty: no auth, loopback
    only); ``max_queue_depth``: queued jobs past which ``POST /jobs`` answers 429 queue_full;
    ``max_streams``: concurrent event streams per tenant (429 too_many_streams past it);
    ``max_upload_bytes``: the largest asset upload; ``presign_seconds``: lifetime of the
    presigned S3 URLs given for content (0: the gateway serves all content itself);
    ``processes``: gateway processes sharing the port (``gateway.processes``)."""

    farm: Settings = field(default_factory=Settings)
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    tokens: Mapping[str, str] = field(default_factory=dict, compare=False)
    max_queue_depth: int = DEFAULT_MAX_QUEUE_DEPTH
    max_streams: int = DEFAULT_MAX_STREAMS
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    retry_after_seconds: int = 5
    presign_seconds: int = DEFAULT_PRESIGN_SECONDS
    processes: int = 1
    #: Bearer token for ``GET /metrics`` (else the tenants' tokens guard it); never in repr().
    metrics_token: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not 0 <= self.port < 65536:
            _fail("GATEWAY_PORT", str(self.port), "must be a TCP port (0 picks a free one)")
        if self.max_queue_depth < 1:
            _fail("MAX_QUEUE_DEPTH", str(self.max_queue_depth), "must be a positive integer")
        if self.max_upload_bytes < 1:
            _fail("MAX_UPLOAD_BYTES", str(self.max_upload_bytes), "must be a positive integer")
        if not 0 <= self.presign_seconds <= MAX_PRESIGN_SECONDS:
            _fail("GATEWAY_PRESIGN_SECONDS", str(self.presign_seconds),
                  f"must be 0 (off) to {MAX_PRESIGN_SECONDS} seconds")  # fmt: skip
        if self.max_streams < 1:
            _fail("GATEWAY_MAX_STREAMS", str(self.max_streams), "must be a positive integer")
        if not 1 <= self.processes <= MAX_PROCESSES:
            _fail("GATEWAY_PROCESSES", str(self.processes), f"must be 1-{MAX_PROCESSES}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> GatewaySettings:
        """Settings from ``environ`` (default ``os.environ``); raises SettingsError naming the
        variable."""
        env = os.environ if environ is None else environ
        return cls(
            farm=Settings.from_env(env),
            host=env.get(ENV_PREFIX + "GATEWAY_HOST", "").strip() or DEFAULT_HOST,
            port=_int(env, "GATEWAY_PORT", DEFAULT_PORT),
            tokens=parse_tokens(env.get(ENV_PREFIX + "API_TOKENS", "")),
            max_queue_depth=_int(env, "MAX_QUEUE_DEPTH", DEFAULT_MAX_QUEUE_DEPTH),
            max_streams=_int(env, "GATEWAY_MAX_STREAMS", DEFAULT_MAX_STREAMS),
            max_upload_bytes=_int(env, "MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD_BYTES),
            presign_seconds=_int(env, "GATEWAY_PRESIGN_SECONDS", DEFAULT_PRESIGN_SECONDS),
            metrics_token=env.get(ENV_PREFIX + "METRICS_TOKEN", "").strip() or None,
            processes=_int(env, "GATEWAY_PROCESSES", 1),
        )

    @property
    def auth_required(self) -> bool:
        return bool(self.tokens)

    def __repr__(self) -> str:
        return (
            f"GatewaySettings(host={self.host!r}, port={self.port}, "
            f"tenants={sorted(set(self.tokens.values()))!r}, "
            f"max_queue_depth={self.max_queue_depth}, max_streams={self.max_streams}, "
            f"processes={self.processes})"
        )


def parse_tokens(raw: str) -> dict[str, str]:
    """``"tenant:token,tenant2:token2"`` → {token: tenant}. Raises SettingsError (the value is
    never echoed: it holds secrets)."""
    tokens: dict[str, str] = {}
    pairs = [pair.strip() for pair in raw.split(",") if pair.strip()]
    if len(pairs) > MAX_TOKEN_PAIRS:
        _fail("API_TOKENS", "***", f"at most {MAX_TOKEN_PAIRS} tenant:token pairs")
    for index, pair in enumerate(pairs):
        tenant, sep, token = pair.partition(":")
        tenant, token = tenant.strip(), token.strip()
        if not (sep and tenant and token):
            _fail("API_TOKENS", "***", f"pair {index + 1} is not tenant:token")
        if len(tenant) > 64 or not all(ch.isalnum() or ch in "_.-" for ch in tenant):
            _fail(
                "API_TOKENS", "***", f"pair {index + 1}: tenant must be 1-64 of A-Z a-z 0-9 _ . -"
            )
        if len(token) < 16:
            _fail("API_TOKENS", "***", f"pair {index + 1}: tokens must be at least 16 characters")
        if token in tokens:
            _fail("API_TOKENS", "***", f"pair {index + 1}: the same token is given twice")
        tokens[token] = tenant
    return tokens


def describe() -> list[tuple[str, str, str]]:
    """(variable, default, meaning) for the README."""
    p = ENV_PREFIX
    return [
        (p + "API_TOKENS", "unset (no auth; loopback only)",
         "tenant:token[,tenant2:token2] — Bearer tokens of the gateway, one tenant each (≥ 16 "
         "characters; never logged)"),
        (p + "GATEWAY_HOST", DEFAULT_HOST, "address the gateway binds (non-loopback needs tokens)"),
        (p + "GATEWAY_PORT", str(DEFAULT_PORT), "port of the gateway"),
        (p + "GATEWAY_PROCESSES", "1",
         "gateway processes on the one port (SO_REUSEPORT), one core each, supervised by "
         "`comfyfarm gateway`; each has its own Redis pool and pub/sub subscription"),
        (p + "MAX_QUEUE_DEPTH", str(DEFAULT_MAX_QUEUE_DEPTH),
         "queued jobs past which POST /api/v2/jobs answers 429 queue_full + Retry-After"),
        (p + "GATEWAY_MAX_STREAMS", str(DEFAULT_MAX_STREAMS),
         "concurrent event streams per tenant and gateway process (429 too_many_streams past "
         "it)"),
        (p + "METRICS_TOKEN", "unset (tenant tokens guard /metrics)",
         "Bearer token that alone opens the gateway's GET /metrics (as for workers, exporter)"),
        (p + "MAX_UPLOAD_BYTES", str(DEFAULT_MAX_UPLOAD_BYTES),
         "largest asset upload (POST /api/v2/assets; streamed, never held in memory)"),
        (p + "GATEWAY_PRESIGN_SECONDS", str(DEFAULT_PRESIGN_SECONDS),
         "with s3:// storage: content URLs are presigned S3 URLs valid this long and GET "
         "…/content redirects to one; 0: the gateway serves the bytes itself"),
    ]  # fmt: skip


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(ENV_PREFIX + name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        _fail(name, raw, "not a whole number")


def _fail(name: str, value: str, reason: str) -> NoReturn:
    raise SettingsError(variable=ENV_PREFIX + name, value=value, reason=reason)
