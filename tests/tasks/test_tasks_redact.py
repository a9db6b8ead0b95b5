"""``redact_url`` masks credentials; ``restore_credentials`` puts a worker's own back."""

from __future__ import annotations

from comfyfarm.tasks.redact import redact_url, restore_credentials


def test_password_and_lone_user_token_are_masked() -> None:
    """user:pw keeps the user and masks the password; a user name alone (a token) is masked."""
    assert redact_url("http://user:pw@host:8188/x") == "http://user:***@host:8188/x"
    assert redact_url("http://t0ken@host") == "http://***@host"
    assert redact_url("http://host:8188") == "http://host:8188"
    assert redact_url("http://u:p@[::1]:1") == "http://u:***@[::1]:1"


def test_restore_credentials_only_for_the_same_user() -> None:
    """A masked URL gets the password of the worker's own URL back only for the same user."""
    own = "http://farm:pw@a:1"
    assert restore_credentials("http://farm:***@b:2", own) == "http://farm:pw@b:2"
    assert restore_credentials("http://other:***@b:2", own) == "http://other:***@b:2"
    assert restore_credentials("http://b:2", own) == "http://b:2"
