"""Secrets from AWS Secrets Manager: the same code on AWS and locally (moto server).

A function is given only the name or ARN of each secret it needs (config, `*_SECRET_ARN`); the
values are read through boto3 and kept in the process for SECRETS_TTL_SECONDS (default 300 s),
so a rotated secret reaches a warm function within that time. If Secrets Manager cannot be
reached when a kept value has expired, the kept value goes on serving (retried 30 s later).

Shapes:
    JWT_SECRET_ARN, SERVICE_TOKEN_SECRET_ARN, PSEUDONYM_KEY_SECRET_ARN   a plain string
    ORIGIN_VERIFY_SECRET_ARN   a plain string: CloudFront's X-Origin-Verify header; optional
    DATABASE_SECRET_ARN   {"username", "password", "host", "port", "dbname"} (RDS) or {"url"}
    MONGO_SECRET_ARN      {"username", "password", "host", "port"} (DocumentDB) or {"url"} (Atlas)
    ALPHAVANTAGE_SECRET_ARN   {"api_key"}; an empty key turns the provider off
    REDIS_AUTH_SECRET_ARN, CACHE_AUTH_SECRET_ARN   a plain string: the AUTH token of the state
        Redis and of the cache (ElastiCache); optional: no ARN (and, in local mode, no
        REDIS_PASSWORD / CACHE_REDIS_PASSWORD) means a Redis that asks for no password

Only in local mode, a secret without an ARN falls back to its old plain variable (JWT_SECRET,
SERVICE_TOKEN, PSEUDONYM_KEY, DATABASE_URL, MONGO_URL, ALPHAVANTAGE_API_KEY, ORIGIN_VERIFY_SECRET);
elsewhere that is a ConfigError, except for the optional origin secret (unset: no origin
check). ALPHAVANTAGE_API_KEY, when set in local mode, wins over the secret (tests and developers
point the chain at another key without reprovisioning). No value is ever logged, and
no error message here contains one.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from botocore.exceptions import BotoCoreError, ClientError

from stockpred import config
from stockpred.cloud import aws
from stockpred.config import ConfigError
from stockpred.observability.logs import get_logger

log = get_logger("secrets")
RETRY_AFTER_FAILURE_S = 30.0
clock = time.monotonic  # tests move time forward through this

_kept: dict[str, tuple[float, str]] = {}  # secret id -> (read at, value)
_lock = threading.Lock()


def get(secret_id: str) -> str:
    """The secret's current value (its SecretString), read at most once per TTL."""
    now = clock()
    kept = _kept.get(secret_id)
    if kept is not None and now - kept[0] < config.load().secrets_ttl_s:
        return kept[1]
    with _lock:
        kept = _kept.get(secret_id)
        if kept is not None and now - kept[0] < config.load().secrets_ttl_s:
            return kept[1]
        try:
            answer = aws.client("secretsmanager").get_secret_value(SecretId=secret_id)
        except (ClientError, BotoCoreError) as exc:
            reason = (exc.response.get("Error", {}).get("Code", "error") if isinstance(exc, ClientError)
                      else type(exc).__name__)
            if kept is None:
                raise ConfigError(f"secret {secret_id} could not be read: {reason}") from None
            log.warning("secret refresh failed; the kept value goes on serving",
                        extra={"fields": {"secret": secret_id, "reason": reason}})
            ttl = config.load().secrets_ttl_s
            _kept[secret_id] = (now - ttl + min(RETRY_AFTER_FAILURE_S, ttl), kept[1])
            return kept[1]
        value = answer.get("SecretString")
        if value is None:
            value = bytes(answer["SecretBinary"]).decode()
        _kept[secret_id] = (now, value)
        return value


def get_json(secret_id: str) -> dict[str, Any]:
    return _parse_json(secret_id, get(secret_id))


def cache_clear() -> None:
    """Forgets every kept value: the next read asks Secrets Manager again."""
    with _lock:
        _kept.clear()
    _database_url.cache_clear()
    _mongo_url.cache_clear()


def _parse_json(secret_id: str, raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise ConfigError(f"secret {secret_id} must hold a JSON object")
    return value


def _plain(arn: str | None, arn_var: str, local_value: str | None, local_var: str) -> str:
    if arn:
        return get(arn)
    settings = config.load()
    if not settings.local:
        raise ConfigError(f"{arn_var} must be set outside local mode "
                          "(the name or ARN of its Secrets Manager secret)")
    if not local_value:
        raise ConfigError(f"{arn_var} (or, in local mode, {local_var}) must be set; "
                          "`stockpred up` provides both")
    return local_value


# ---- the secrets the functions use --------------------------------------------------------------
def jwt_secret() -> str:
    s = config.load()
    return _plain(s.jwt_secret_arn, "JWT_SECRET_ARN", s.jwt_secret, "JWT_SECRET")


def service_token() -> str:
    s = config.load()
    return _plain(s.service_token_secret_arn, "SERVICE_TOKEN_SECRET_ARN", s.service_token, "SERVICE_TOKEN")


def pseudonym_key() -> str:
    s = config.load()
    return _plain(s.pseudonym_key_secret_arn, "PSEUDONYM_KEY_SECRET_ARN", s.pseudonym_key, "PSEUDONYM_KEY")


ORIGIN_VERIFY_MIN_LENGTH = 16


def origin_verify_secret() -> str | None:
    """The value CloudFront puts in X-Origin-Verify, or None: no ARN (and, in local mode, no
    ORIGIN_VERIFY_SECRET) means the API is reached directly and checks no origin header."""
    s = config.load()
    if s.origin_verify_secret_arn:
        value = get(s.origin_verify_secret_arn)
    elif s.local and s.origin_verify_secret:
        value = s.origin_verify_secret
    else:
        return None
    if len(value) < ORIGIN_VERIFY_MIN_LENGTH:  # an empty or guessable front-door key: refuse to run
        raise ConfigError(f"the origin verify secret must be {ORIGIN_VERIFY_MIN_LENGTH}+ characters "
                          "(ORIGIN_VERIFY_SECRET_ARN's secret)")
    return value


def alphavantage_api_key() -> str | None:
    """The Alpha Vantage key, or None: no key means the provider is off."""
    s = config.load()
    if s.local and s.alphavantage_api_key:
        return s.alphavantage_api_key
    if s.alphavantage_secret_arn:
        key = get_json(s.alphavantage_secret_arn).get("api_key") or ""
        if not isinstance(key, str):
            raise ConfigError(f"secret {s.alphavantage_secret_arn}: api_key must be a string")
        return key.strip() or None
    if s.local:
        return None
    raise ConfigError("ALPHAVANTAGE_SECRET_ARN must be set outside local mode while MARKET_PROVIDERS "
                      "lists alphavantage (its secret may hold an empty api_key)")


def database_url() -> str:
    """PostgreSQL's URL: from the database secret (RDS shape or {"url"})."""
    s = config.load()
    if s.database_secret_arn:
        return _database_url(s.database_secret_arn, get(s.database_secret_arn))
    return _plain(None, "DATABASE_SECRET_ARN", s.database_url, "DATABASE_URL")


def mongo_url() -> str:
    """MongoDB's URL: from the mongo secret (DocumentDB shape or {"url"})."""
    s = config.load()
    if s.mongo_secret_arn:
        return _mongo_url(s.mongo_secret_arn, get(s.mongo_secret_arn))
    return _plain(None, "MONGO_SECRET_ARN", s.mongo_url, "MONGO_URL")


def redis_auth_token() -> str | None:
    """The state Redis's AUTH token (REDIS_AUTH_SECRET_ARN), or None: no password."""
    s = config.load()
    return _auth_token(s.redis_auth_secret_arn, "REDIS_AUTH_SECRET_ARN", s.redis_password)


def cache_auth_token() -> str | None:
    """The cache Redis's AUTH token (CACHE_AUTH_SECRET_ARN), or None: no password."""
    s = config.load()
    return _auth_token(s.cache_auth_secret_arn, "CACHE_AUTH_SECRET_ARN", s.cache_redis_password)


def _auth_token(arn: str | None, arn_var: str, local_value: str | None) -> str | None:
    # Optional, unlike _plain's secrets: an operator's own Redis (StateRedisUrl) may ask for none.
    if arn:
        value = get(arn)
        if not value.strip():
            raise ConfigError(f"secret {arn} ({arn_var}) is empty")
        return value.strip()
    if config.load().local and local_value:
        return local_value
    return None


@functools.lru_cache(maxsize=4)
def _database_url(secret_id: str, raw: str) -> str:
    return database_url_from(_parse_json(secret_id, raw), secret_id)


@functools.lru_cache(maxsize=4)
def _mongo_url(secret_id: str, raw: str) -> str:
    return mongo_url_from(_parse_json(secret_id, raw), secret_id=secret_id)


# ---- secret shapes to URLs ----------------------------------------------------------------------
def _fields(secret: dict[str, Any], secret_id: str, *names: str) -> list[str]:
    missing = [n for n in names if secret.get(n) in (None, "")]
    if missing:
        raise ConfigError(f"secret {secret_id} lacks {', '.join(missing)} (or a url)")
    return [str(secret[n]) for n in names]


def _userinfo(user: str, password: str) -> str:
    return f"{quote(user, safe='')}:{quote(password, safe='')}"


def database_url_from(secret: dict[str, Any], secret_id: str = "database secret",
                      ca_file: str | None = None) -> str:
    """{"url"} as it is; RDS's {"username","password","host","port","dbname"} as a postgresql://
    URL over verified TLS (the stack's RDS refuses plain connections: rds.force_ssl), trusting
    Amazon's RDS CA bundle as DocumentDB's URL does."""
    if secret.get("url"):
        return str(secret["url"])
    user, password, host = _fields(secret, secret_id, "username", "password", "host")
    port = int(secret.get("port") or 5432)
    dbname = str(secret.get("dbname") or "stockpred")
    ca = ca_file or str(documentdb_ca_bundle())
    return (f"postgresql://{_userinfo(user, password)}@{host}:{port}/{quote(dbname, safe='')}"
            f"?sslmode=verify-full&sslrootcert={quote(ca, safe='/')}")


def mongo_url_from(secret: dict[str, Any], ca_file: str | None = None,
                   secret_id: str = "mongo secret") -> str:
    """{"url"} as it is (Atlas: mongodb+srv://...); DocumentDB's {"username","password","host",
    "port"} as a TLS URL trusting Amazon's RDS CA bundle (fetched once, see documentdb_ca_bundle)."""
    if secret.get("url"):
        return str(secret["url"])
    user, password, host = _fields(secret, secret_id, "username", "password", "host")
    port = int(secret.get("port") or 27017)
    ca = ca_file or str(documentdb_ca_bundle())
    return (f"mongodb://{_userinfo(user, password)}@{host}:{port}/?tls=true"
            f"&tlsCAFile={quote(ca, safe='/')}&replicaSet=rs0&readPreference=primary"
            "&retryWrites=false")


@functools.cache
def documentdb_ca_bundle() -> Path:
    """Amazon's RDS global CA bundle (DocumentDB's server certificates chain to it; it is in no
    standard trust store), fetched once per process over HTTPS verified by the usual web PKI."""
    import requests

    url = config.load().documentdb_ca_bundle_url
    try:
        resp = requests.get(url, timeout=(3, 15))
        resp.raise_for_status()
    except requests.RequestException as exc:
        raise ConfigError(f"the DocumentDB CA bundle could not be fetched from {url}: "
                          f"{type(exc).__name__}") from None
    if b"-----BEGIN CERTIFICATE-----" not in resp.content:
        raise ConfigError(f"{url} did not answer with PEM certificates")
    target = Path(tempfile.gettempdir()) / "rds-global-bundle.pem"
    partial = target.with_name(f".{target.name}.{os.getpid()}")
    partial.write_bytes(resp.content)
    partial.replace(target)
    return target
