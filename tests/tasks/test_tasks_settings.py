"""Settings: built explicitly from COMFYFARM_* variables, validated, secrets never shown."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from comfyfarm.tasks.errors import SettingsError
from comfyfarm.tasks.settings import Settings, describe, redact_url


def test_defaults_without_environment() -> None:
    """An empty environment gives the documented defaults."""
    s = Settings.from_env({})
    assert s.broker_url == "redis://127.0.0.1:6379/0"
    assert s.result_backend == s.broker_url
    assert s.storage_url == (Path.cwd() / "comfyfarm-output").as_uri()
    assert s.key_prefix == "comfyfarm:"
    assert s.max_job_seconds == 1800
    assert s.visibility_timeout == 3 * 1800 + 300
    assert s.result_expires == 7 * 24 * 3600
    assert (s.stall_timeout, s.lease_seconds, s.max_retries) == (120, 30, 3)
    assert s.webhook_secret is None and s.flower_basic_auth is None


def test_every_variable_is_read() -> None:
    """Each COMFYFARM_* variable sets its field."""
    env = {
        "COMFYFARM_BROKER_URL": "redis://:pw@redis:6380/2",
        "COMFYFARM_RESULT_BACKEND": "rediss://redis:6381/3",
        "COMFYFARM_STORAGE_URL": "s3://bucket/out",
        "COMFYFARM_KEY_PREFIX": "farm2:",
        "COMFYFARM_MAX_JOB_SECONDS": "600",
        "COMFYFARM_VISIBILITY_TIMEOUT": "4000",
        "COMFYFARM_RESULT_EXPIRES": "3600",
        "COMFYFARM_STALL_TIMEOUT": "30",
        "COMFYFARM_LEASE_SECONDS": "10",
        "COMFYFARM_MAX_RETRIES": "5",
        "COMFYFARM_WEBHOOK_SECRET": "hush",
        "COMFYFARM_FLOWER_BASIC_AUTH": "admin:secret",
    }
    s = Settings.from_env(env)
    assert s.broker_url == "redis://:pw@redis:6380/2"
    assert s.result_backend == "rediss://redis:6381/3"
    assert s.storage_url == "s3://bucket/out"
    assert s.key_prefix == "farm2:"
    assert (s.max_job_seconds, s.visibility_timeout, s.result_expires) == (600, 4000, 3600)
    assert (s.stall_timeout, s.lease_seconds, s.max_retries) == (30, 10, 5)
    assert (s.webhook_secret, s.flower_basic_auth) == ("hush", "admin:secret")


def test_visibility_default_follows_max_job() -> None:
    """Without an explicit visibility timeout it is 3 × the longest job + margin."""
    assert Settings.from_env({"COMFYFARM_MAX_JOB_SECONDS": "100"}).visibility_timeout == 600


@pytest.mark.parametrize(
    ("variable", "value", "needle"),
    [
        ("COMFYFARM_MAX_JOB_SECONDS", "soon", "not a number"),
        ("COMFYFARM_MAX_JOB_SECONDS", "-5", "positive"),
        ("COMFYFARM_MAX_RETRIES", "2.5", "whole number"),
        ("COMFYFARM_MAX_RETRIES", "1000", "between 0 and 100"),
        ("COMFYFARM_BROKER_URL", "amqp://rabbit//", "scheme"),
        ("COMFYFARM_BROKER_URL", "redis://:pw@host:notaport/0", "not a URL"),
        ("COMFYFARM_STORAGE_URL", "ftp://x/y", "scheme"),
        ("COMFYFARM_OUTPUT_DIGEST", "md5", "blake3, sha256, none"),
        ("COMFYFARM_KEY_PREFIX", "my farm:", "spaces"),
        ("COMFYFARM_KEY_PREFIX", "farm", "must end with"),
        ("COMFYFARM_FLOWER_BASIC_AUTH", "admin", "user:password"),
        ("COMFYFARM_VISIBILITY_TIMEOUT", "1000", "hard time limit"),
        ("COMFYFARM_LEASE_SECONDS", "99999", "shorter than"),
    ],
)
def test_bad_value_names_the_variable(variable: str, value: str, needle: str) -> None:
    """A bad value raises SettingsError naming the variable and saying what is wrong."""
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({variable: value})
    assert caught.value.variable == variable
    assert variable in str(caught.value)
    assert needle in caught.value.reason


def test_visibility_must_exceed_the_job_limit() -> None:
    """A visibility timeout shorter than the longest job is refused (duplicate executions)."""
    with pytest.raises(SettingsError, match="VISIBILITY_TIMEOUT"):
        Settings(max_job_seconds=1800, visibility_timeout=1800)
    assert Settings(max_job_seconds=2, visibility_timeout=3, lease_seconds=1).time_limit < 3


def test_secrets_are_hidden_in_repr() -> None:
    """repr() shows neither the webhook secret, the Flower password nor URL passwords."""
    s = Settings(
        broker_url="redis://user:topsecret@redis:6379/0",
        webhook_secret="hmac-key-123",
        flower_basic_auth="admin:flowerpw",
    )
    text = repr(s)
    for secret in ("topsecret", "hmac-key-123", "flowerpw"):
        assert secret not in text
    assert "redis://user:***@redis:6379/0" in text
    assert "webhook_secret=***" in text


def test_redact_url_keeps_urls_without_password() -> None:
    """Only the password part of a URL is masked."""
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert redact_url("rediss://:pw@[::1]:6380/1") == "rediss://:***@[::1]:6380/1"


def test_nothing_reads_the_environment_at_import() -> None:
    """Importing the contract with a broken variable set does not fail; from_env() does."""
    env = dict(os.environ, COMFYFARM_MAX_JOB_SECONDS="broken")
    code = (
        "import comfyfarm.tasks.settings, comfyfarm.tasks.app, comfyfarm.tasks.models, "
        "comfyfarm.tasks.keys; print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.stdout.strip() == "ok", done.stderr


def test_describe_lists_every_field() -> None:
    """The README table covers every Settings field, each with a default and a meaning."""
    rows = describe()
    variables = {variable for variable, _, _ in rows}
    for name in Settings.__dataclass_fields__:
        assert f"COMFYFARM_{name.upper()}" in variables
    assert all(default and meaning for _, default, meaning in rows)


def test_settings_are_frozen() -> None:
    """Settings cannot be changed after construction; with_overrides validates a copy."""
    s = Settings()
    with pytest.raises(AttributeError):
        s.max_retries = 9  # type: ignore[misc]
    assert s.with_overrides(max_retries=9).max_retries == 9
    with pytest.raises(SettingsError):
        s.with_overrides(max_retries=-1)


def test_overrides_carry_derived_values_along() -> None:
    """Changing the broker moves a derived result backend; changing max job, the visibility."""
    s = Settings().with_overrides(broker_url="redis://other:6379/1", max_job_seconds=100)
    assert s.result_backend == "redis://other:6379/1"
    assert s.visibility_timeout == 600
    kept = Settings(result_backend="redis://results:6379/2").with_overrides(
        broker_url="redis://b/0"
    )
    assert kept.result_backend == "redis://results:6379/2"


def test_output_digest_defaults_to_blake3_and_can_be_sha256_or_none() -> None:
    """COMFYFARM_OUTPUT_DIGEST picks the outputs' hash: blake3 unless set to sha256 or none."""
    assert Settings.from_env({}).output_digest == "blake3"
    for value in ("sha256", "none", "blake3"):
        assert Settings.from_env({"COMFYFARM_OUTPUT_DIGEST": value}).output_digest == value
