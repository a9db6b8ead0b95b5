"""One Redis over TLS (``rediss://``) with the farm's own CA and a client certificate
(``COMFYFARM_REDIS_CA_FILE``, ``_CERT_FILE``, ``_KEY_FILE``): Celery's broker and result backend
and the farm's own client all verify the server and present the certificate. Skipped, saying
why, without a Redis server built with TLS on PATH (see ``tls_kit``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tls_kit import NO_TLS_SERVER, TlsFiles, TlsRedis, make_tls_files, tls_binary

from comfyfarm.tasks.app import make_app
from comfyfarm.tasks.connect import redis_client
from comfyfarm.tasks.settings import Settings


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def server(tls_files: TlsFiles) -> Iterator[TlsRedis]:
    binary = tls_binary()
    if binary is None:
        pytest.skip(NO_TLS_SERVER)
    with TlsRedis(tls_files, binary) as redis_server:
        yield redis_server


def test_broker_backend_and_own_client_verify_a_tls_redis(server: TlsRedis) -> None:
    """Through the farm's CA: the own client writes, kombu connects and publishes, Celery's
    backend reads what the own client wrote."""
    settings = Settings.from_env({"COMFYFARM_BROKER_URL": server.url, **server.files.farm_env()})
    client = redis_client(settings)
    assert client.set("comfyfarm-tls", "1")
    app = make_app(settings)
    with app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1)
        with connection.channel() as channel:
            assert channel.client.ping()
    assert app.backend.client.get("comfyfarm-tls") == b"1"
    client.close()
