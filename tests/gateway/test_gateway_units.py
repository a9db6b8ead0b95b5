"""Fast tests of the gateway's pure parts: tokens, bind rule, settings, cursors, status map."""

from __future__ import annotations

import subprocess
import sys

import pytest

from comfyfarm.gateway.auth import DEFAULT_TENANT, GatewayRefused, check_bind, tenant_for
from comfyfarm.gateway.errors import ApiError
from comfyfarm.gateway.job_view import v2_status
from comfyfarm.gateway.jobs import decode_cursor, encode_cursor
from comfyfarm.gateway.settings import GatewaySettings, parse_tokens
from comfyfarm.gateway.submission import parse_metadata, parse_submission
from comfyfarm.tasks.errors import SettingsError

TOKENS = parse_tokens("acme:acme-token-0123456789abcdef,globex:globex-token-0123456789abcdef")


def test_bearer_token_names_its_tenant() -> None:
    """Each configured token maps to its tenant."""
    assert tenant_for("Bearer acme-token-0123456789abcdef", TOKENS) == "acme"
    assert tenant_for("bearer globex-token-0123456789abcdef", TOKENS) == "globex"


@pytest.mark.parametrize(
    "header", [None, "", "Bearer", "Basic acme-token-0123456789abcdef", "Bearer nope"]
)
def test_missing_or_wrong_token_is_401(header: str | None) -> None:
    """No token, another scheme or an unknown token is 401 unauthorized."""
    with pytest.raises(ApiError) as caught:
        tenant_for(header, TOKENS)
    assert caught.value.status == 401 and caught.value.code == "unauthorized"


def test_without_tokens_everyone_is_the_default_tenant_on_loopback_only() -> None:
    """No tokens: the default tenant, and only a loopback bind is allowed."""
    assert tenant_for(None, {}) == DEFAULT_TENANT
    check_bind("127.0.0.1", {})
    with pytest.raises(GatewayRefused):
        check_bind("0.0.0.0", {})  # noqa: S104
    check_bind("0.0.0.0", TOKENS)  # noqa: S104


def test_gateway_command_refuses_an_open_bind_without_tokens() -> None:
    """``comfyfarm gateway --host 0.0.0.0`` without tokens exits 2 with the reason."""
    env = {"PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-P", "-m", "comfyfarm", "gateway", "--host", "0.0.0.0"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "COMFYFARM_API_TOKENS" in done.stderr


@pytest.mark.parametrize(
    "raw", ["acme", "acme:short", ":acme-token-0123456789abcdef", "a b:acme-token-0123456789abcdef"]
)
def test_bad_token_lists_are_refused_without_echoing_them(raw: str) -> None:
    """A malformed COMFYFARM_API_TOKENS names the variable, never the secret."""
    with pytest.raises(SettingsError) as caught:
        parse_tokens(raw)
    assert caught.value.variable == "COMFYFARM_API_TOKENS" and "0123456789" not in str(caught.value)


def test_settings_repr_hides_tokens() -> None:
    """repr() lists tenants, not tokens."""
    settings = GatewaySettings(tokens=TOKENS)
    assert "acme" in repr(settings) and "token-0123" not in repr(settings)


def test_cursor_round_trips_and_foreign_cursors_are_422() -> None:
    """A cursor decodes to the position it encodes; anything else is 422 invalid_cursor."""
    position = (1765000000.25, "0b6098ae-2fb9-47f4-9f37-e0b4f9c4615a")
    assert decode_cursor(encode_cursor(position)) == position
    with pytest.raises(ApiError) as caught:
        decode_cursor("not-ours")
    assert caught.value.code == "invalid_cursor"


def test_farm_status_words_map_onto_the_contracts() -> None:
    """cancelling → canceling, cancelled → canceled, retrying → queued."""
    assert v2_status("cancelling") == "canceling"
    assert v2_status("cancelled") == "canceled"
    assert v2_status("retrying") == "queued"
    assert v2_status("unknown") == "queued"


def test_reserved_and_secret_fields_are_refused() -> None:
    """``inputs`` (reserved) and a partner API key (a secret) are 422 naming the field."""
    for body, field in (
        ({"workflow": {}, "inputs": {"seed": 1}}, "inputs"),
        (
            {"workflow": {}, "extra_data": {"api_key_comfy_org": "k"}},
            "extra_data.api_key_comfy_org",
        ),
        ({"workflow": {}, "priority": 11}, "priority"),
    ):
        with pytest.raises(ApiError) as caught:
            parse_submission(body)
        assert caught.value.status == 422 and caught.value.details == {"field": field}


def test_metadata_limits() -> None:
    """At most 16 pairs of safe names and string values (422 metadata_invalid)."""
    assert parse_metadata({"run": "1"}) == {"run": "1"}
    for bad in ({str(i): "x" for i in range(17)}, {"a b": "x"}, {"a": 1}):
        with pytest.raises(ApiError) as caught:
            parse_metadata(bad)
        assert caught.value.code == "metadata_invalid"
