"""The Redis AUTH settings: the two secrets' names, the local plain passwords, and the readers'
answers when no secret is named (no Secrets Manager is reached here; see
tests/integration/test_redis_auth.py for the secrets themselves)."""

from __future__ import annotations

import pytest

from stockpred import config
from stockpred.cloud import secrets
from stockpred.config import from_environ

AWS_ADDRESSES = {"STOCKPRED_ENV": "aws", "REDIS_URL": "rediss://state:6379/0",
                 "CACHE_REDIS_URLS": "rediss://cache:6379/0"}
PLAIN = {"REDIS_PASSWORD": "state-password-0123456789", "CACHE_REDIS_PASSWORD": "cache-password-0123456789"}


@pytest.fixture(autouse=True)
def _fresh_settings():
    config.load.cache_clear()
    yield
    config.load.cache_clear()


def use(monkeypatch: pytest.MonkeyPatch, environ: dict[str, str]) -> None:
    """This process's settings are `environ` alone."""
    for name in ("STOCKPRED_ENV", "REDIS_AUTH_SECRET_ARN", "CACHE_AUTH_SECRET_ARN", *PLAIN):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    config.load.cache_clear()


def test_the_two_secret_names_are_two_settings():
    s = from_environ({**AWS_ADDRESSES, "REDIS_AUTH_SECRET_ARN": "arn:state",
                      "CACHE_AUTH_SECRET_ARN": "arn:cache"})
    assert (s.redis_auth_secret_arn, s.cache_auth_secret_arn) == ("arn:state", "arn:cache")
    s = from_environ({**AWS_ADDRESSES, "CACHE_AUTH_SECRET_ARN": "arn:cache"})
    assert (s.redis_auth_secret_arn, s.cache_auth_secret_arn) == (None, "arn:cache")


def test_local_plain_passwords_are_read_in_local_mode_only_and_never_shown():
    local = from_environ(PLAIN)
    assert (local.redis_password, local.cache_redis_password) == tuple(PLAIN.values())
    assert not any(p in repr(local) for p in PLAIN.values())
    aws = from_environ({**AWS_ADDRESSES, **PLAIN})
    assert (aws.redis_password, aws.cache_redis_password) == (None, None)


def test_readers_fall_back_to_the_plain_passwords_in_local_mode(monkeypatch):
    use(monkeypatch, PLAIN)
    assert secrets.redis_auth_token() == PLAIN["REDIS_PASSWORD"]
    assert secrets.cache_auth_token() == PLAIN["CACHE_REDIS_PASSWORD"]


def test_no_secret_and_no_plain_password_means_no_password(monkeypatch):
    # A developer's own redis:// without AUTH, and, outside local mode, an operator's own Redis.
    use(monkeypatch, {})
    assert (secrets.redis_auth_token(), secrets.cache_auth_token()) == (None, None)
    use(monkeypatch, {**AWS_ADDRESSES, **PLAIN})
    assert (secrets.redis_auth_token(), secrets.cache_auth_token()) == (None, None)
