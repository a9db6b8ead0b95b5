"""A property-based run over the Comfy API v2 spec (schemathesis) against a real gateway: no
request it generates gets a 5xx, and every documented response matches its schema."""

from __future__ import annotations

import json

import pytest
import redis
import schemathesis
import yaml
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance
from spec_check import SPEC_PATH, _nullable_refs
from tenants import TOKENS

from comfyfarm.tasks.schemas import publish_schema

OBJECT_INFO = SPEC_PATH.parents[1] / "tests" / "protocol" / "object_info.json"


def _schema() -> schemathesis.BaseSchema:
    data = yaml.safe_load(SPEC_PATH.read_text())
    data["servers"] = [{"url": "/"}]
    loaded = schemathesis.openapi.from_dict(_nullable_refs(data, data["components"]["schemas"]))
    loaded.config.generation.update(modes=list(schemathesis.GenerationMode))  # valid and invalid
    return loaded


schema = _schema()


@pytest.fixture
def published_gateway(gateway, settings_for_spec):
    """A gateway whose farm has a published node schema (so submissions are validated)."""
    return gateway


@pytest.fixture
def settings_for_spec(settings):
    client = redis.Redis.from_url(settings.broker_url)
    publish_schema(client, settings.key_prefix, "spec-worker", comfy_url="http://127.0.0.1:1",
                   object_info=json.loads(OBJECT_INFO.read_text()), models={})  # fmt: skip
    client.close()
    return settings


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_spec_no_server_errors_and_conforming_bodies(case, published_gateway) -> None:
    """Generated requests (valid and invalid) never get a 5xx or a body off the spec."""
    case.call_and_validate(
        base_url=published_gateway.url,
        headers={"Authorization": f"Bearer {TOKENS['acme']}"},
        checks=[not_a_server_error, response_schema_conformance],
    )
