"""Redis Sentinel in the settings and the Celery configuration (the real failover test is in
tests/reliability/test_rel_sentinel.py)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from comfyfarm.services import free_port
from comfyfarm.tasks.app import celery_config
from comfyfarm.tasks.connect import check_tls_trust, sentinel_kwargs
from comfyfarm.tasks.errors import SettingsError
from comfyfarm.tasks.settings import Settings

SENTINELS = "sentinel://:s3cret@10.0.0.1:26379/0;sentinel://:s3cret@10.0.0.2:26379/0"


def test_sentinel_settings_come_from_the_environment() -> None:
    """The sentinels and the master name; the result backend follows the broker."""
    settings = Settings.from_env(
        {"COMFYFARM_BROKER_URL": SENTINELS, "COMFYFARM_SENTINEL_MASTER": "farm"}
    )
    assert (settings.broker_url, settings.result_backend) == (SENTINELS, SENTINELS)
    assert settings.sentinel_master == "farm"


def test_the_password_of_every_sentinel_address_is_hidden() -> None:
    shown = repr(Settings(broker_url=SENTINELS, sentinel_master="farm"))
    assert "s3cret" not in shown and shown.count(":***@") == 4  # broker and backend, 2 each


def test_celery_gets_the_master_name_for_broker_and_backend() -> None:
    config = celery_config(Settings(broker_url=SENTINELS, sentinel_master="farm"))
    assert config["broker_transport_options"]["master_name"] == "farm"
    assert config["result_backend_transport_options"]["master_name"] == "farm"


def test_a_bad_sentinel_address_is_named() -> None:
    """Each address of the list is checked."""
    with pytest.raises(SettingsError, match="BROKER_URL"):
        Settings(broker_url="sentinel://10.0.0.1:26379;sentinel://h:port", sentinel_master="m")


def test_the_sentinels_own_password_reaches_celery_and_stays_hidden() -> None:
    """COMFYFARM_SENTINEL_PASSWORD goes to broker and backend as sentinel_kwargs, not to repr."""
    settings = Settings.from_env(
        {"COMFYFARM_BROKER_URL": SENTINELS, "COMFYFARM_SENTINEL_MASTER": "farm",
         "COMFYFARM_SENTINEL_PASSWORD": "sentinel-pw"}
    )  # fmt: skip
    config = celery_config(settings)
    for options in (config["broker_transport_options"],
                    config["result_backend_transport_options"]):  # fmt: skip
        assert options["sentinel_kwargs"]["password"] == "sentinel-pw"
    assert "sentinel-pw" not in repr(settings)


def test_without_a_sentinel_password_no_sentinel_kwargs_are_set() -> None:
    """Sentinels without a password keep redis-py's default (the master's socket options)."""
    config = celery_config(Settings(broker_url=SENTINELS, sentinel_master="farm"))
    assert "sentinel_kwargs" not in config["broker_transport_options"]


def _pem(tmp_path: Path, name: str) -> str:
    """A file where a PEM file is expected (settings only check that it exists)."""
    path = tmp_path / name
    path.write_text("-----BEGIN CERTIFICATE-----\n")
    return str(path)


def test_sentinel_tls_reaches_broker_backend_and_sentinels(tmp_path: Path) -> None:
    """COMFYFARM_SENTINEL_TLS=1: kombu (broker), Celery (backend) and the connections to the
    sentinels all get verified TLS with the farm's CA and client certificate."""
    settings = Settings.from_env(
        {"COMFYFARM_BROKER_URL": SENTINELS, "COMFYFARM_SENTINEL_MASTER": "farm",
         "COMFYFARM_SENTINEL_TLS": "1", "COMFYFARM_REDIS_CA_FILE": _pem(tmp_path, "ca.pem"),
         "COMFYFARM_REDIS_CERT_FILE": _pem(tmp_path, "cert.pem"),
         "COMFYFARM_REDIS_KEY_FILE": _pem(tmp_path, "key.pem")}
    )  # fmt: skip
    config = celery_config(settings)
    expected = {
        "ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": str(tmp_path / "ca.pem"),
        "ssl_certfile": str(tmp_path / "cert.pem"), "ssl_keyfile": str(tmp_path / "key.pem"),
    }  # fmt: skip
    assert config["broker_use_ssl"] == expected
    assert config["redis_backend_use_ssl"] == expected
    for options in (config["broker_transport_options"],
                    config["result_backend_transport_options"]):  # fmt: skip
        assert options["sentinel_kwargs"] == {
            **expected,
            "ssl": True,
            "socket_timeout": 5.0,
            "socket_connect_timeout": 5.0,
        }
    assert sentinel_kwargs(settings) == options["sentinel_kwargs"]


def test_without_sentinel_tls_nothing_asks_for_tls() -> None:
    config = celery_config(Settings(broker_url=SENTINELS, sentinel_master="farm"))
    assert "broker_use_ssl" not in config and "redis_backend_use_ssl" not in config


def test_sentinel_tls_without_sentinels_is_refused() -> None:
    """One Redis over TLS is rediss://; the flag alone would be silently ignored."""
    with pytest.raises(SettingsError, match="COMFYFARM_SENTINEL_TLS.*rediss://"):
        Settings.from_env({"COMFYFARM_BROKER_URL": "redis://h:6379/0",
                           "COMFYFARM_SENTINEL_TLS": "yes"})  # fmt: skip


def test_a_missing_certificate_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="COMFYFARM_REDIS_CA_FILE.*no such file"):
        Settings.from_env({"COMFYFARM_REDIS_CA_FILE": str(tmp_path / "nope.pem")})


def test_a_client_certificate_needs_its_key(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="REDIS_KEY_FILE go together"):
        Settings.from_env({"COMFYFARM_REDIS_CERT_FILE": _pem(tmp_path, "cert.pem")})


def test_a_rediss_url_gets_the_ca_file_unless_it_chose_itself(tmp_path: Path) -> None:
    """The CA setting serves one Redis over TLS too; a URL with its own ?ssl_cert_reqs= decides
    alone, as before."""
    ca = _pem(tmp_path, "ca.pem")
    config = celery_config(Settings(broker_url="rediss://h:6380/0", redis_ca_file=ca))
    assert config["broker_use_ssl"] == {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": ca}
    chosen = Settings(broker_url="rediss://h:6380/0?ssl_cert_reqs=none", redis_ca_file=ca)
    assert "broker_use_ssl" not in celery_config(chosen)


def test_a_tls_broker_that_is_merely_down_is_left_to_the_retries() -> None:
    """check_tls_trust stops a worker only for TLS failures no retry mends; a refused connection
    (Redis not up yet) is Celery's to wait for, as without TLS."""
    settings = Settings(broker_url=f"rediss://127.0.0.1:{free_port()}/0")
    check_tls_trust(settings)  # no exception


def test_without_tls_nothing_is_checked() -> None:
    check_tls_trust(Settings(broker_url="redis://127.0.0.1:1/0"))  # not even connected
