"""Fast tests of the gateway's pure parts: tokens, bind rule, settings, cursors, status map."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from comfyfarm.gateway.auth import DEFAULT_TENANT, GatewayRefused, check_bind, tenant_for
from comfyfarm.gateway.context import Gateway
from comfyfarm.gateway.errors import ApiError
from comfyfarm.gateway.job_view import v2_status
from comfyfarm.gateway.jobs import decode_cursor, encode_cursor
from comfyfarm.gateway.settings import GatewaySettings, parse_tokens
from comfyfarm.gateway.submission import parse_metadata, parse_submission
from comfyfarm.storage import LocalStore
from comfyfarm.tasks.errors import SettingsError
from comfyfarm.tasks.settings import Settings

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


def test_malformed_and_secret_fields_are_refused() -> None:
    """``inputs`` that is not an object of at most 64 names, and a partner API key (a secret),
    are 422 naming the field."""
    for body, field in (
        ({"workflow": {}, "inputs": ["seed", 1]}, "inputs"),
        ({"workflow": {}, "inputs": {str(n): n for n in range(65)}}, "inputs"),
        (
            {"workflow": {}, "extra_data": {"api_key_comfy_org": "k"}},
            "extra_data.api_key_comfy_org",
        ),
        ({"workflow": {}, "priority": 11}, "priority"),
    ):
        with pytest.raises(ApiError) as caught:
            parse_submission(body)
        assert caught.value.status == 422 and caught.value.details == {"field": field}


def test_named_inputs_are_parsed_as_given() -> None:
    """The ``inputs`` extension is kept as given (its values are checked when applied)."""
    body = {"workflow": {}, "inputs": {"seed": 7, "6.text": "a cat"}}
    assert parse_submission(body).inputs == {"seed": 7, "6.text": "a cat"}
    assert parse_submission({"workflow": {}}).inputs == {}


def test_metadata_limits() -> None:
    """At most 16 pairs of safe names and string values (422 metadata_invalid)."""
    assert parse_metadata({"run": "1"}) == {"run": "1"}
    for bad in ({str(i): "x" for i in range(17)}, {"a b": "x"}, {"a": 1}):
        with pytest.raises(ApiError) as caught:
            parse_metadata(bad)
        assert caught.value.code == "metadata_invalid"


def test_live_outputs_keep_the_first_of_each_slot_and_skip_bad_entries() -> None:
    """A redelivered job announces its outputs again: each (node, kind, index) is listed once."""
    import json

    from comfyfarm.gateway.job_state import parse_live

    def entry(index: int, value: str) -> str:
        return json.dumps({"node_id": "7", "kind": "text", "index": index, "filename": "",
                           "uri": None, "bytes": 0, "hash": "", "mime": "text/plain",
                           "value": value})  # fmt: skip

    live = parse_live([entry(0, "a"), "not json", entry(0, "again"), entry(1, "b"), "{}"])

    assert [(o.index, o.value) for o in live] == [(0, "a"), (1, "b")]


def test_a_live_message_names_its_job_and_kind() -> None:
    """Live-channel messages become OUTPUT (with the record they carry) or PREVIEW for their
    job; others are ignored."""
    from comfyfarm.gateway.events import OUTPUT, PREVIEW, _live_message

    assert _live_message(b'{"job_id": "j1", "output": {"index": 0}}') == (
        "j1", OUTPUT + b' {"index": 0}',
    )  # fmt: skip
    assert _live_message(b'{"job_id": "j1"}') == ("j1", OUTPUT)
    assert _live_message(b'{"job_id": "j1", "preview": true}') == ("j1", PREVIEW)
    assert _live_message(b"[1]")[0] is None and _live_message(b"nope")[0] is None


def test_a_job_is_expired_from_its_retention_on() -> None:
    """is_expired turns true at created_at + retention, and an expired Job has no outputs."""
    from comfyfarm.gateway.job_records import JobRecord
    from comfyfarm.gateway.job_view import is_expired, render_expired

    record = JobRecord("00000000-0000-4000-8000-000000000000", "acme", 1000.0, {}, {})

    assert not is_expired(record, 60, now=1059.9) and is_expired(record, 60, now=1060.0)
    body = render_expired(record, 1060.0)
    assert body["status"] == "expired" and body["outputs"] == []
    assert body["error"]["code"] == "expired"


def test_the_gateway_stores_assets_as_comfyfarm_storage_fsync_says(tmp_path: Path) -> None:
    """Uploaded assets go to a file:// store that fsyncs unless COMFYFARM_STORAGE_FSYNC=0."""
    for fsync in (True, False):
        farm = Settings(storage_url=tmp_path.as_uri(), storage_fsync=fsync)
        gateway = Gateway(GatewaySettings(farm=farm))
        try:
            assert isinstance(gateway.store, LocalStore) and gateway.store.fsync is fsync
        finally:
            asyncio.run(gateway.close())


def test_a_failed_subscription_leaves_no_listener_behind() -> None:
    """Redis unreachable: listen raises, and neither a listener nor a channel stays filed — a
    second listen for the job must try to subscribe again (and fail), not hand out a queue that
    no subscription feeds."""
    import redis.asyncio as aioredis
    from redis.exceptions import ConnectionError as RedisConnectionError

    from comfyfarm.gateway.events import EventHub
    from comfyfarm.services import free_port

    async def scenario() -> None:
        client = aioredis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1)
        hub = EventHub(client, "units:")
        try:
            for _ in range(2):
                with pytest.raises((RedisConnectionError, OSError)):
                    await hub.listen("job-1")
                assert hub.listeners == 0 and hub.subscriptions == 0
        finally:
            await client.aclose()

    asyncio.run(scenario())
