"""Typed settings shared by producers and workers, built explicitly from COMFYFARM_* variables.

Nothing here reads the environment at import time: call ``Settings.from_env()`` (or build
``Settings(...)`` directly, e.g. in tests). ``describe()`` lists every variable for the README.

Redis passwords and TLS come through the URLs: ``redis://:PASSWORD@host:6379/0``,
``redis://USER:PASSWORD@host/0`` (ACL), ``rediss://host:6380/0`` (TLS; certificates are verified
unless the URL says ``?ssl_cert_reqs=none``). Redis Sentinel: ``sentinel://:PASSWORD@h1:26379/0;
sentinel://h2:26379/0`` (the sentinels; the password is the master's) plus ``sentinel_master``
(``COMFYFARM_SENTINEL_MASTER``), the name the sentinels monitor, and ``sentinel_password``
(``COMFYFARM_SENTINEL_PASSWORD``) if the sentinels require one of their own. ``sentinel_tls``
(``COMFYFARM_SENTINEL_TLS=1``) speaks TLS to the sentinels and to the master they name (a
``sentinel://`` URL has no TLS scheme of its own), certificates verified.

Every TLS connection to Redis or a sentinel (``rediss://`` or ``sentinel_tls``) verifies the
server against ``redis_ca_file`` (``COMFYFARM_REDIS_CA_FILE``, PEM; default: the system's CAs) and
presents ``redis_cert_file``/``redis_key_file`` (``COMFYFARM_REDIS_CERT_FILE``/``_KEY_FILE``) as
its client certificate when given (Redis asks for one by default: ``tls-auth-clients yes``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

from comfyfarm.tasks.errors import SettingsError
from comfyfarm.tasks.redact import SENTINEL_SEP
from comfyfarm.tasks.redact import redact_url as redact_url  # re-exported (its old home)

ENV_PREFIX = "COMFYFARM_"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"
DEFAULT_KEY_PREFIX = "comfyfarm:"
DEFAULT_MAX_JOB_SECONDS = 1800.0
VISIBILITY_MARGIN_SECONDS = 300.0
#: Seconds between two sweeps that re-queue unacknowledged jobs older than the visibility timeout
#: (kombu's default is a sweep every ~100 s). Only the last-resort net since the takeover
#: (``worker.takeover``) hands a dead worker's job on in seconds; each sweep of each worker costs
#: five commands (a lock, a range read, the script that unlocks).
DEFAULT_RESTORE_INTERVAL = 60.0
REDIS_SCHEMES = ("redis", "rediss", "sentinel")
#: Default of ``max_retry_delay``: the longest countdown a worker schedules (job retries wait
#: 2, 4, 8 ... at most 60 s, webhook retries at most 64 s).
DEFAULT_MAX_RETRY_DELAY = 64.0
#: Size caps on what a ComfyUI may send (bytes); the comfy client's defaults are the same.
MIB = 1 << 20
DEFAULT_MAX_JSON_BYTES = 64 * MIB
DEFAULT_MAX_OUTPUT_BYTES = 4096 * MIB
DEFAULT_MAX_WS_FRAME_BYTES = 64 * MIB
STORAGE_SCHEMES = ("file", "s3", "memory")
#: Digests a store can record for each output (``hash`` = ``<algorithm>:<hex>``, or empty).
OUTPUT_DIGESTS = ("blake3", "sha256", "none")


def default_visibility_timeout(max_job_seconds: float) -> float:
    """3 × the longest job + a margin: a running job is never handed to a second worker."""
    return 3 * max_job_seconds + VISIBILITY_MARGIN_SECONDS


def time_limit_grace(max_job_seconds: float) -> float:
    """Grace between the job deadline and Celery's soft limit (and again to the hard limit)."""
    return min(60.0, max_job_seconds / 10)


@dataclass(frozen=True, repr=False)
class Settings:
    """Everything producers and workers must agree on. Secrets never appear in ``repr()``.

    Fields left at their empty/zero default are derived in ``__post_init__``: ``result_backend``
    from ``broker_url``, ``storage_url`` from the current directory, ``visibility_timeout`` from
    ``max_job_seconds``. Invalid values raise ``SettingsError`` naming the variable.
    """

    broker_url: str = DEFAULT_BROKER_URL
    result_backend: str = ""
    storage_url: str = ""
    output_digest: str = OUTPUT_DIGESTS[0]
    #: Whether a file:// store fsyncs each output before the result says it is stored.
    storage_fsync: bool = True
    key_prefix: str = DEFAULT_KEY_PREFIX
    max_job_seconds: float = DEFAULT_MAX_JOB_SECONDS
    visibility_timeout: float = 0.0
    result_expires: float = 7 * 24 * 3600.0
    stall_timeout: float = 120.0
    lease_seconds: float = 30.0
    restore_interval: float = DEFAULT_RESTORE_INTERVAL
    #: Seconds an idle worker waits on its doorbells before it looks in its queues anyway: how
    #: long a message nobody rang for (a foreign Celery app's) may wait (``worker.safe_fetch``).
    fetch_poll_seconds: float = 5.0
    max_retries: int = 3
    sentinel_master: str = ""
    sentinel_password: str | None = field(default=None, compare=False)
    sentinel_tls: bool = False
    redis_ca_file: str = ""
    redis_cert_file: str = ""
    redis_key_file: str = ""
    max_retry_delay: float = DEFAULT_MAX_RETRY_DELAY
    max_json_bytes: int = DEFAULT_MAX_JSON_BYTES
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES
    max_ws_frame_bytes: int = DEFAULT_MAX_WS_FRAME_BYTES
    webhook_secret: str | None = field(default=None, compare=False)
    flower_basic_auth: str | None = field(default=None, compare=False)
    input_allow: str = ""
    max_input_bytes: int = 100 * 1024 * 1024
    input_timeout: float = 60.0
    input_cache_dir: str = ""
    input_cache_mb: int = 2048
    models_dir: str = ""
    models_cache_gb: float = 0.0
    max_model_bytes: int = 64 << 30
    model_timeout: float = 3600.0
    #: A worker removes the stores' temp files (``.comfyfarm-tmp-*``) older than this, left by a
    #: worker killed mid-copy, at start and every ``temp_max_age / 4`` seconds.
    temp_max_age: float = 3600.0
    affinity: bool = False
    affinity_wait: float = 30.0
    progress_interval: float = 5.0

    def __post_init__(self) -> None:
        if not self.result_backend:
            object.__setattr__(self, "result_backend", self.broker_url)
        if not self.storage_url:
            object.__setattr__(self, "storage_url", (Path.cwd() / "comfyfarm-output").as_uri())
        if not self.visibility_timeout:
            object.__setattr__(
                self, "visibility_timeout", default_visibility_timeout(self.max_job_seconds)
            )
        self._validate()

    # -- derived values ---------------------------------------------------------------------
    @property
    def soft_time_limit(self) -> float:
        """Celery soft time limit: the runner's own deadline should always fire first."""
        return self.max_job_seconds + time_limit_grace(self.max_job_seconds)

    @property
    def time_limit(self) -> float:
        """Celery hard time limit (prefork pool): the child is killed after this."""
        return self.max_job_seconds + 2 * time_limit_grace(self.max_job_seconds)

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``environ`` (default ``os.environ``, read now); unset variables keep
        their defaults. Raises ``SettingsError`` naming the first bad variable."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for spec in fields(cls):
            variable = ENV_PREFIX + spec.name.upper()
            raw = env.get(variable)
            if raw is None or raw.strip() == "":
                continue
            values[spec.name] = _PARSERS[spec.name](variable, raw.strip())
        return cls(**values)  # type: ignore[arg-type]

    def with_overrides(self, **changes: object) -> Settings:
        """A copy with some fields changed (validated again). Values that were derived (result
        backend = broker, visibility from max job) follow the fields they derive from."""
        derived: dict[str, object] = {}
        if "broker_url" in changes and self.result_backend == self.broker_url:
            derived["result_backend"] = ""
        if "max_job_seconds" in changes and self.visibility_timeout == default_visibility_timeout(
            self.max_job_seconds
        ):
            derived["visibility_timeout"] = 0.0
        return replace(self, **{**derived, **changes})  # type: ignore[arg-type]

    def __repr__(self) -> str:
        shown = []
        for spec in fields(self):
            value = getattr(self, spec.name)
            if spec.name in _SECRET_FIELDS:
                shown.append(f"{spec.name}={'***' if value else None}")
            elif spec.name in _URL_FIELDS:
                shown.append(f"{spec.name}={redact_url(value)!r}")
            else:
                shown.append(f"{spec.name}={value!r}")
        return f"Settings({', '.join(shown)})"

    # -- validation ---------------------------------------------------------------------------
    def _validate(self) -> None:
        _check_redis_url("BROKER_URL", self.broker_url, self.sentinel_master)
        _check_redis_url("RESULT_BACKEND", self.result_backend, self.sentinel_master)
        _check_tls(self)
        _check_storage_url(self.storage_url)
        if self.output_digest not in OUTPUT_DIGESTS:
            _fail("OUTPUT_DIGEST", str(self.output_digest), f"must be {', '.join(OUTPUT_DIGESTS)}")
        prefix = self.key_prefix
        if any(ch.isspace() or ch in "*?[]" for ch in prefix) or len(prefix) > 64:
            _fail("KEY_PREFIX", prefix, "at most 64 characters, no spaces or * ? [ ]")
        if prefix and prefix[-1] not in ":_-.":
            # Celery's result backend appends "_" otherwise; keep every key under the same prefix.
            _fail("KEY_PREFIX", prefix, "must end with ':', '_', '-' or '.' (e.g. 'comfyfarm:')")
        for name in (
            "max_job_seconds", "result_expires", "stall_timeout", "lease_seconds",
            "restore_interval", "fetch_poll_seconds", "max_retry_delay", "affinity_wait",
            "progress_interval",
        ):  # fmt: skip
            _check_positive(name, getattr(self, name))
        _check_positive("visibility_timeout", self.visibility_timeout)
        if self.visibility_timeout <= self.time_limit:
            _fail(
                "VISIBILITY_TIMEOUT",
                str(self.visibility_timeout),
                f"must exceed the hard time limit {self.time_limit:g} s "
                f"(COMFYFARM_MAX_JOB_SECONDS={self.max_job_seconds:g} + grace), otherwise Redis "
                "hands a still-running job to a second worker",
            )
        if self.visibility_timeout <= self.max_retry_delay:
            # A retry waits out its countdown in the worker, unacknowledged: Redis would hand a
            # second copy of it to another worker meanwhile.
            _fail(
                "VISIBILITY_TIMEOUT",
                str(self.visibility_timeout),
                "must exceed the longest retry countdown "
                f"COMFYFARM_MAX_RETRY_DELAY={self.max_retry_delay:g} s, otherwise Redis "
                "re-delivers a retry still waiting for its countdown and two copies of one job "
                "run in parallel (lower COMFYFARM_MAX_RETRY_DELAY or raise the visibility timeout)",
            )
        if self.lease_seconds >= self.visibility_timeout:
            _fail(
                "LEASE_SECONDS",
                str(self.lease_seconds),
                f"must be shorter than COMFYFARM_VISIBILITY_TIMEOUT={self.visibility_timeout:g}",
            )
        _check_positive("input_timeout", self.input_timeout)
        _check_positive("temp_max_age", self.temp_max_age)
        if not 0 < self.max_input_bytes <= 1 << 40:
            _fail("MAX_INPUT_BYTES", str(self.max_input_bytes), "must be between 1 and 2**40")
        _check_positive("model_timeout", self.model_timeout)
        if self.max_model_bytes <= 0:
            _fail("MAX_MODEL_BYTES", str(self.max_model_bytes), "must be positive")
        if not math.isfinite(self.models_cache_gb) or self.models_cache_gb < 0:
            _fail("MODELS_CACHE_GB", str(self.models_cache_gb), "must be 0 (no limit) or more")
        if self.input_cache_mb < 0:
            _fail("INPUT_CACHE_MB", str(self.input_cache_mb), "must be 0 (no cache) or more")
        if not 0 <= self.max_retries <= 100:
            _fail("MAX_RETRIES", str(self.max_retries), "must be between 0 and 100")
        for name in ("max_json_bytes", "max_output_bytes", "max_ws_frame_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1024:
                _fail(name, repr(value), "must be a whole number of bytes, at least 1024")
        if self.flower_basic_auth is not None:
            for pair in self.flower_basic_auth.split(","):
                user, sep, password = pair.partition(":")
                if not (sep and user and password):
                    _fail("FLOWER_BASIC_AUTH", "***", "must be user:password[,user2:password2]")


_SECRET_FIELDS = frozenset({"webhook_secret", "flower_basic_auth", "sentinel_password"})
_URL_FIELDS = frozenset({"broker_url", "result_backend", "storage_url"})


def _fail(name: str, value: str, reason: str) -> NoReturn:
    variable = name if name.startswith(ENV_PREFIX) else ENV_PREFIX + name.upper()
    raise SettingsError(variable=variable, value=value, reason=reason)


def _check_positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        _fail(name, repr(value), "must be a number")
    if not math.isfinite(value) or value <= 0:
        _fail(name, str(value), "must be a positive number of seconds")


def _check_url(name: str, url: str, schemes: tuple[str, ...]) -> None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a bad port
    except ValueError as exc:
        _fail(name, redact_url(url), f"not a URL ({exc})")
    if parts.scheme not in schemes:
        _fail(name, redact_url(url), f"scheme must be one of {', '.join(schemes)}")
    if not parts.hostname:
        _fail(name, redact_url(url), "needs a host, e.g. redis://127.0.0.1:6379/0")


def uses_sentinel(url: str) -> bool:
    """Whether ``url`` names Redis Sentinels rather than one Redis."""
    return url.startswith("sentinel://")


def sentinel_urls(url: str) -> list[str]:
    """The sentinel addresses of a ``sentinel://…;sentinel://…`` URL, one URL each."""
    return [part.strip() for part in url.split(SENTINEL_SEP) if part.strip()]


def _check_redis_url(name: str, url: str, sentinel_master: str) -> None:
    if not uses_sentinel(url):
        _check_url(name, url, REDIS_SCHEMES[:2])
        return
    for part in sentinel_urls(url):
        _check_url(name, part, ("sentinel",))
    if not sentinel_master:
        _fail(name, redact_url(url), "a sentinel:// URL needs COMFYFARM_SENTINEL_MASTER (the "
              "name the sentinels monitor)")  # fmt: skip


def _check_tls(settings: Settings) -> None:
    """SENTINEL_TLS only with sentinels; certificate files that exist, cert and key together."""
    sentinels = uses_sentinel(settings.broker_url) or uses_sentinel(settings.result_backend)
    if settings.sentinel_tls and not sentinels:
        _fail("SENTINEL_TLS", "1", "is for sentinel:// URLs; one Redis over TLS is rediss://")
    for name in ("redis_ca_file", "redis_cert_file", "redis_key_file"):
        path = getattr(settings, name)
        if path and not Path(path).is_file():
            _fail(name, path, "no such file (a PEM file is expected)")
    if bool(settings.redis_cert_file) != bool(settings.redis_key_file):
        _fail("REDIS_CERT_FILE", settings.redis_cert_file or "unset",
              "COMFYFARM_REDIS_CERT_FILE and COMFYFARM_REDIS_KEY_FILE go together")  # fmt: skip


def _check_storage_url(url: str) -> None:
    scheme = urlsplit(url).scheme if "://" in url else ""
    if scheme and scheme not in STORAGE_SCHEMES:
        _fail("STORAGE_URL", url, f"scheme must be one of {', '.join(STORAGE_SCHEMES)}, or a path")


def _parse_str(variable: str, raw: str) -> str:
    return raw


def _parse_float(variable: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(variable=variable, value=raw, reason="not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise SettingsError(variable=variable, value=raw, reason="must be a positive number")
    return value


def _parse_bool(variable: str, raw: str) -> bool:
    word = raw.lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise SettingsError(
        variable=variable, value=raw, reason="must be 1/true/yes/on or 0/false/no/off"
    )


def _parse_int(variable: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(variable=variable, value=raw, reason="not a whole number") from None


_PARSERS: dict[str, Callable[[str, str], object]] = {
    "broker_url": _parse_str,
    "result_backend": _parse_str,
    "storage_url": _parse_str,
    "output_digest": _parse_str,
    "storage_fsync": _parse_bool,
    "key_prefix": _parse_str,
    "max_job_seconds": _parse_float,
    "temp_max_age": _parse_float,
    "visibility_timeout": _parse_float,
    "result_expires": _parse_float,
    "stall_timeout": _parse_float,
    "lease_seconds": _parse_float,
    "restore_interval": _parse_float,
    "fetch_poll_seconds": _parse_float,
    "max_retries": _parse_int,
    "sentinel_master": _parse_str,
    "sentinel_password": _parse_str,
    "sentinel_tls": _parse_bool,
    "redis_ca_file": _parse_str,
    "redis_cert_file": _parse_str,
    "redis_key_file": _parse_str,
    "max_retry_delay": _parse_float,
    "max_json_bytes": _parse_int,
    "max_output_bytes": _parse_int,
    "max_ws_frame_bytes": _parse_int,
    "webhook_secret": _parse_str,
    "flower_basic_auth": _parse_str,
    "input_allow": _parse_str,
    "max_input_bytes": _parse_int,
    "input_timeout": _parse_float,
    "input_cache_dir": _parse_str,
    "input_cache_mb": _parse_int,
    "models_dir": _parse_str,
    "models_cache_gb": _parse_float,
    "max_model_bytes": _parse_int,
    "model_timeout": _parse_float,
    "affinity": _parse_bool,
    "affinity_wait": _parse_float,
    "progress_interval": _parse_float,
}


def describe() -> list[tuple[str, str, str]]:
    """(variable, default, meaning) for every variable, in README order."""
    p = ENV_PREFIX
    return [
        (p + "BROKER_URL", DEFAULT_BROKER_URL,
         "Redis for the job queues (redis://:PW@host:port/db; rediss:// for TLS)"),
        (p + "RESULT_BACKEND", "= BROKER_URL", "Redis for job states, progress and results"),
        (p + "SENTINEL_MASTER", "unset",
         "with Redis Sentinel: the master name the sentinels monitor; BROKER_URL is then "
         "sentinel://:PW@host1:26379/0;sentinel://host2:26379/0 (PW is the master's)"),
        (p + "SENTINEL_PASSWORD", "unset",
         "password of the sentinels themselves (their requirepass), if they have one; never "
         "logged"),
        (p + "SENTINEL_TLS", "0",
         "1: TLS to the sentinels and to the master they name (certificates verified, see "
         "REDIS_CA_FILE)"),
        (p + "REDIS_CA_FILE", "system CAs",
         "PEM file of the CA(s) that signed the Redis servers' and sentinels' certificates "
         "(rediss:// and SENTINEL_TLS)"),
        (p + "REDIS_CERT_FILE", "unset",
         "client certificate (PEM) for a Redis that asks for one (tls-auth-clients yes, Redis's "
         "default); with REDIS_KEY_FILE"),
        (p + "REDIS_KEY_FILE", "unset", "private key (PEM) of REDIS_CERT_FILE"),
        (p + "STORAGE_URL", "file://<cwd>/comfyfarm-output",
         "where outputs go: file:///dir, a path, s3://bucket/prefix?endpoint_url=..&region=.., "
         "memory://name"),
        (p + "OUTPUT_DIGEST", OUTPUT_DIGESTS[0],
         "digest recorded as each output's hash: blake3 (blake3:<hex>, as Comfy API v2), sha256 "
         "(sha256:<hex>) or none (no hash: faster copies of large files); a file:// URL's "
         "?digest= overrides it for that store"),
        (p + "STORAGE_FSYNC", "1",
         "1: a file:// store fsyncs each output (and its directory) before the result says it "
         "is stored; 0: it does not (for storage whose durability is handled elsewhere; saves "
         "the fsyncs at the end of each copy, writeback still overlaps it; a host crash can lose "
         "outputs a result says are stored); a "
         "file:// URL's ?fsync=0|1 overrides it for that store; s3:// is always durable"),
        (p + "KEY_PREFIX", DEFAULT_KEY_PREFIX,
         "prefix of every Redis key (queues, results, leases): several farms can share one Redis"),
        (p + "MAX_JOB_SECONDS", f"{DEFAULT_MAX_JOB_SECONDS:g}",
         "longest a job may run; the default and upper bound of a job's deadline"),
        (p + "VISIBILITY_TIMEOUT", f"3 × MAX_JOB_SECONDS + {VISIBILITY_MARGIN_SECONDS:g}",
         "seconds before Redis re-delivers an unacknowledged job: only the last-resort net (a "
         "dead worker's job is taken over much sooner, see LEASE_SECONDS); must exceed "
         "MAX_JOB_SECONDS (+ grace) and MAX_RETRY_DELAY"),
        (p + "RESULT_EXPIRES", "604800 (7 days)", "how long job results and states are kept"),
        (p + "STALL_TIMEOUT", "120",
         "default seconds without any ComfyUI event before a job is checked and failed"),
        (p + "LEASE_SECONDS", "30",
         "TTL of a running job's lease (renewed while it runs; a second copy skips a live one); "
         "a killed worker's job is taken over max(LEASE_SECONDS, 30) + up to 5 s after it died"),
        (p + "RESTORE_INTERVAL", f"{DEFAULT_RESTORE_INTERVAL:g}",
         "seconds between the sweeps that re-queue jobs of a worker that died (unacknowledged "
         "for longer than VISIBILITY_TIMEOUT)"),
        (p + "FETCH_POLL_SECONDS", "5",
         "seconds an idle worker waits on its queues' doorbells before it looks in the queues "
         "anyway; every message comfyfarm queues rings, so this bounds only the wait of a "
         "message published by a foreign Celery app (lower: sooner; higher: fewer idle commands)"),
        (p + "MAX_RETRIES", "3",
         "default retries of a job after a retryable failure; only tries that POSTed its prompt "
         "count (failures before that, e.g. ComfyUI restarting, are retried up to 20 more times)"),
        (p + "MAX_RETRY_DELAY", f"{DEFAULT_MAX_RETRY_DELAY:g}",
         "longest wait before a retry (job retries wait 2, 4, 8 ... up to 60 s, webhooks up to "
         "64 s, both capped by this); VISIBILITY_TIMEOUT must exceed it"),
        (p + "MAX_JSON_BYTES", f"{DEFAULT_MAX_JSON_BYTES} (64 MiB)",
         "largest JSON answer read from a ComfyUI (/history, /object_info, /queue); a larger "
         "one fails the job (ResponseTooLarge); every answer must also arrive within the "
         "request timeout in total"),
        (p + "MAX_OUTPUT_BYTES", f"{DEFAULT_MAX_OUTPUT_BYTES} (4 GiB)",
         "largest output file downloaded from /view; a larger one fails the job "
         "(ResponseTooLarge); a download must end by the job's deadline"),
        (p + "MAX_WS_FRAME_BYTES", f"{DEFAULT_MAX_WS_FRAME_BYTES} (64 MiB)",
         "largest WebSocket message from a ComfyUI; a larger one (announced or sent) drops the "
         "socket before it is read, and the job asks ComfyUI over HTTP instead"),
        (p + "WEBHOOK_SECRET", "unset", "HMAC-SHA256 key for signing webhook calls (never logged)"),
        (p + "FLOWER_BASIC_AUTH", "unset", "user:password for Flower (never logged)"),
        (p + "INPUT_ALLOW", "unset",
         "non-public hosts, IPs or CIDR networks that input URLs may reach (comma-separated); "
         "loopback, private and link-local addresses are refused otherwise (SSRF)"),
        (p + "MAX_INPUT_BYTES", "104857600 (100 MiB)", "largest input file a worker fetches"),
        (p + "INPUT_TIMEOUT", "60", "seconds for a whole input download (all redirects)"),
        (p + "INPUT_CACHE_DIR", "~/.cache/comfyfarm/inputs",
         "where a worker keeps inputs fetched by URL (by BLAKE3 of their content)"),
        (p + "INPUT_CACHE_MB", "2048", "size of that cache (least recently used go; 0 = none)"),
        (p + "MODELS_DIR", "unset",
         "the worker's ComfyUI models/ folder: models named by URL in a workflow are downloaded "
         "there (once) before the prompt"),
        (p + "MODELS_CACHE_GB", "0 (no limit)",
         "budget of downloaded models; least recently used downloads go (never the operator's)"),
        (p + "MAX_MODEL_BYTES", "68719476736 (64 GiB)", "largest model file a worker downloads"),
        (p + "MODEL_TIMEOUT", "3600", "seconds for one model download"),
        (p + "TEMP_MAX_AGE", "3600",
         "seconds after which a worker removes a store temp file (.comfyfarm-tmp-*) a killed "
         "worker left behind; swept at start and every TEMP_MAX_AGE/4"),
        (p + "AFFINITY", "0",
         "producers send a job to the queue of its checkpoint (comfyfarm.model.<slug>), which "
         "workers that have that checkpoint loaded consume first (worker/affinity.py)"),
        (p + "AFFINITY_WAIT", "30",
         "seconds a job waits for a worker with its checkpoint loaded; after that any worker "
         "that lists the checkpoint takes it (no starvation)"),
        (p + "PROGRESS_INTERVAL", "5",
         "seconds between a running job's progress updates (result backend, the gateway's "
         "progress stream); a new phase (submitted, running, collecting …) is sent once it has "
         "held for 1 s (at most this interval): one that ends sooner costs no update. Flower's "
         "event goes with a phase's first update and every 6th after it. An update costs Redis "
         "two commands (three with Flower's event): lower it for smoother progress bars"),
        (p + "S3_ENDPOINT_URL", "unset (AWS)",
         "S3-compatible endpoint for s3:// storage (read by the s3 store; the URL query wins)"),
        (p + "S3_REGION", "unset (AWS_REGION)", "region for s3:// storage"),
    ]  # fmt: skip
