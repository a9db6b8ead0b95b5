"""fetch_schemas: one ComfyUI's node schemas and model lists through ComfyClient, and the
worker's SchemaPublisher built on it."""

from __future__ import annotations

import uuid

import pytest
import redis
from comfy_fake_http import BASE, Answer, FakeComfy, session_for

from comfyfarm.comfy.client import ComfyClient
from comfyfarm.comfy.errors import ComfyUnavailable
from comfyfarm.comfy.schemas import fetch_schemas
from comfyfarm.tasks.schemas import load_schemas
from comfyfarm.worker.registry import SchemaPublisher

API_PROBE = {("GET", "/api/prompt"): Answer(200, {"exec_info": {"queue_remaining": 0}})}
NODES = {"EmptyImage": {"input": {"required": {}}, "output": ["IMAGE"]}}


def _client(routes: dict) -> ComfyClient:
    return ComfyClient(
        BASE, timeout=5, session=session_for(FakeComfy(routes={**API_PROBE, **routes}))
    )


def test_reads_object_info_and_every_model_list_of_the_simulator(sim) -> None:
    """Against the real simulator: its node classes and its model folders with their files."""
    with ComfyClient(sim.url) as client:
        schemas = fetch_schemas(client)
    assert "KSampler" in schemas.object_info
    assert schemas.models["checkpoints"] and schemas.missing == ()


def test_a_model_list_that_fails_is_named_in_missing() -> None:
    """A folder whose list cannot be read is left out and named, the others are kept."""
    client = _client({
        ("GET", "/api/object_info"): Answer(200, NODES),
        ("GET", "/api/models"): Answer(200, ["checkpoints", "loras"]),
        ("GET", "/api/models/checkpoints"): Answer(200, ["a.safetensors"]),
        ("GET", "/api/models/loras"): Answer(500, "boom"),
    })  # fmt: skip
    schemas = fetch_schemas(client)
    assert schemas.models == {"checkpoints": ["a.safetensors"]}
    assert schemas.missing == ("loras",)


def test_no_model_folder_list_gives_no_models() -> None:
    """A ComfyUI without /models still has schemas; its model lists are empty, none missing."""
    schemas = fetch_schemas(_client({("GET", "/api/object_info"): Answer(200, NODES)}))
    assert (schemas.object_info, schemas.models, schemas.missing) == (NODES, {}, ())


def test_unreadable_node_schemas_raise_the_typed_client_error() -> None:
    """An HTML answer where /object_info should be is ComfyUnavailable, not a parse error."""
    client = _client({("GET", "/api/object_info"): Answer(200, "<html>proxy</html>", "text/html")})
    with pytest.raises(ComfyUnavailable, match="expected JSON"):
        fetch_schemas(client)


def _routes(loras: Answer) -> dict:
    return {
        ("GET", "/api/prompt"): Answer(200, {"exec_info": {"queue_remaining": 0}}),
        ("GET", "/api/object_info"): Answer(200, NODES),
        ("GET", "/api/models"): Answer(200, ["checkpoints", "loras"]),
        ("GET", "/api/models/checkpoints"): Answer(200, ["a.safetensors"]),
        ("GET", "/api/models/loras"): loras,
    }


def test_partial_model_lists_are_not_published_until_complete(redis_url: str) -> None:
    """A model list that fails keeps the schemas unpublished; the next healthy check publishes."""
    rds = redis.Redis.from_url(redis_url)  # bytes: the schema bodies are compressed
    prefix = f"r-{uuid.uuid4().hex[:8]}:"
    fake = FakeComfy(routes=_routes(Answer(500, "boom")))
    publisher = SchemaPublisher(ComfyClient(BASE, session=session_for(fake)), rds, prefix, "gpu0")
    publisher.update(True)
    assert load_schemas(rds, prefix) == []
    fake.routes.update(_routes(Answer(200, ["l.safetensors"])))
    publisher.update(True)
    [published] = load_schemas(rds, prefix)
    assert published.models == {"checkpoints": ["a.safetensors"], "loras": ["l.safetensors"]}
    assert published.object_info == NODES
