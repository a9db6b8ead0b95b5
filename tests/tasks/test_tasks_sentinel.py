"""Redis Sentinel in the settings and the Celery configuration (the real failover test is in
tests/reliability/test_rel_sentinel.py)."""

from __future__ import annotations

import pytest

from comfyfarm.tasks.app import celery_config
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
