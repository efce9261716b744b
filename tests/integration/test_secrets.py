"""stockpred.cloud.secrets against the session's moto server: reads, the TTL cache, rotation, shapes.

Each test makes its own secrets (unique names) in the real moto server the session started, and
points this process at them through the `*_SECRET_ARN` variables, as a function is pointed.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import tempfile
import threading
import uuid
from collections.abc import Iterator
from urllib.parse import parse_qs, unquote, urlsplit

import boto3
import pytest

from localstack.provision import SECRETS
from stockpred import config
from stockpred.cloud import aws, secrets
from stockpred.config import ConfigError


@pytest.fixture
def sm(stack):
    return boto3.client("secretsmanager", endpoint_url=stack["AWS_ENDPOINT_URL"],
                        region_name=stack["AWS_DEFAULT_REGION"], aws_access_key_id="test",
                        aws_secret_access_key="test")


class Env:
    """Sets variables as a function would be given them (None: unset); the next read sees them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch

    def set(self, **values: str | None) -> None:
        for name, value in values.items():
            if value is None:
                self.monkeypatch.delenv(name, raising=False)
            else:
                self.monkeypatch.setenv(name, value)
        config.load.cache_clear()


@pytest.fixture
def env(stack, monkeypatch) -> Iterator[Env]:
    """Settings and kept secrets forgotten before and after: each test reads its own."""
    config.load.cache_clear()
    secrets.cache_clear()
    yield Env(monkeypatch)
    monkeypatch.undo()
    config.load.cache_clear()
    secrets.cache_clear()


@pytest.fixture
def calls() -> Iterator[list[str]]:
    """GetSecretValue calls this process's client really makes (botocore's own event hook)."""
    made: list[str] = []
    client = aws.client("secretsmanager")

    def count(params, **_):
        made.append(params["SecretId"])

    client.meta.events.register("provide-client-params.secrets-manager.GetSecretValue", count)
    yield made
    client.meta.events.unregister("provide-client-params.secrets-manager.GetSecretValue", count)


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(secrets, "clock", clock)
    return clock


def new_secret(sm, value: str) -> str:
    name = f"test/{uuid.uuid4().hex[:12]}"
    sm.create_secret(Name=name, SecretString=value)
    return name


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_stack_gives_secret_names_and_moto_holds_its_values(stack, sm):
    for plain in ("JWT_SECRET", "SERVICE_TOKEN", "PSEUDONYM_KEY"):
        assert plain not in stack
    assert {var: stack[var] for var in SECRETS} == SECRETS
    database = json.loads(sm.get_secret_value(SecretId=stack["DATABASE_SECRET_ARN"])["SecretString"])
    mongo = json.loads(sm.get_secret_value(SecretId=stack["MONGO_SECRET_ARN"])["SecretString"])
    assert database == {"url": stack["DATABASE_URL"]} and mongo == {"url": stack["MONGO_URL"]}
    alphavantage = json.loads(sm.get_secret_value(SecretId=stack["ALPHAVANTAGE_SECRET_ARN"])["SecretString"])
    assert alphavantage == {"api_key": ""}
    assert len(sm.get_secret_value(SecretId=stack["JWT_SECRET_ARN"])["SecretString"]) >= 32


def test_reads_a_secret_and_asks_once_within_the_ttl(env, sm, calls):
    name = new_secret(sm, "j" * 40)
    env.set(JWT_SECRET_ARN=name, JWT_SECRET="plain-value-not-used-" * 2)
    assert secrets.jwt_secret() == "j" * 40
    sm.put_secret_value(SecretId=name, SecretString="k" * 40)
    assert secrets.jwt_secret() == "j" * 40
    assert calls == [name]


def test_a_rotated_secret_is_picked_up_after_the_ttl(env, sm, calls, clock):
    name = new_secret(sm, "token-before-rotation")
    env.set(SERVICE_TOKEN_SECRET_ARN=name, SECRETS_TTL_SECONDS="300")
    assert secrets.service_token() == "token-before-rotation"
    sm.put_secret_value(SecretId=name, SecretString="token-after-rotation")
    clock.now += 299
    assert secrets.service_token() == "token-before-rotation"
    clock.now += 2
    assert secrets.service_token() == "token-after-rotation"
    assert calls == [name, name]


def test_a_kept_value_serves_while_the_secret_cannot_be_read(env, sm, clock, caplog):
    name = new_secret(sm, "pseudonym-key-value-" * 3)
    env.set(PSEUDONYM_KEY_SECRET_ARN=name)
    assert secrets.pseudonym_key() == "pseudonym-key-value-" * 3
    sm.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
    clock.now += 301
    assert secrets.pseudonym_key() == "pseudonym-key-value-" * 3
    logged = " ".join(r.getMessage() + json.dumps(getattr(r, "fields", {})) for r in caplog.records)
    assert "secret refresh failed" in logged and "pseudonym-key-value" not in logged


def test_a_secret_that_cannot_be_read_is_a_config_error_naming_it(env):
    env.set(JWT_SECRET_ARN="test/does-not-exist")
    with pytest.raises(ConfigError, match="test/does-not-exist"):
        secrets.jwt_secret()


def test_database_and_mongo_urls_from_their_json_shapes(env, sm, tmp_path, monkeypatch):
    rds = new_secret(sm, json.dumps({"engine": "postgres", "username": "app", "password": "pa:ss@w/rd",
                                     "host": "127.0.0.1", "port": 5432, "dbname": "stockpred"}))
    atlas = "mongodb+srv://u:p@cluster0.example.mongodb.net/?retryWrites=true&w=majority"
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    secrets.documentdb_ca_bundle.cache_clear()
    try:
        with serving(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n") as url:
            env.set(DATABASE_SECRET_ARN=rds, MONGO_SECRET_ARN=new_secret(sm, json.dumps({"url": atlas})),
                    DOCUMENTDB_CA_BUNDLE_URL=url)
            parts = urlsplit(secrets.database_url())
    finally:
        secrets.documentdb_ca_bundle.cache_clear()
    assert (parts.hostname, parts.port, parts.path) == ("127.0.0.1", 5432, "/stockpred")
    assert unquote(parts.username) == "app" and unquote(parts.password) == "pa:ss@w/rd"
    # RDS refuses plain connections (rds.force_ssl): verified TLS against the RDS CA bundle.
    assert parse_qs(parts.query) == {"sslmode": ["verify-full"],
                                     "sslrootcert": [str(tmp_path / "rds-global-bundle.pem")]}
    assert secrets.mongo_url() == atlas
    env.set(DATABASE_SECRET_ARN=new_secret(sm, "not json"))
    with pytest.raises(ConfigError, match="JSON object"):
        secrets.database_url()


@contextlib.contextmanager
def serving(body: bytes) -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/global-bundle.pem"
    finally:
        server.shutdown()
        server.server_close()


def test_documentdb_secret_gives_a_tls_url_with_the_fetched_ca_bundle(env, sm, tmp_path, monkeypatch):
    pem = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    secrets.documentdb_ca_bundle.cache_clear()
    password = "s3cr:et/@?&=%"
    name = new_secret(sm, json.dumps({"username": "admin", "password": password,
                                      "host": "docdb.example.internal", "port": 27017}))
    try:
        with serving(pem) as url:
            env.set(MONGO_SECRET_ARN=name, DOCUMENTDB_CA_BUNDLE_URL=url)
            mongo_url = secrets.mongo_url()
            assert secrets.mongo_url() == mongo_url
        parts = urlsplit(mongo_url)
        query = parse_qs(parts.query)
        assert query["tls"] == ["true"] and query["retryWrites"] == ["false"]
        assert query["replicaSet"] == ["rs0"] and query["readPreference"] == ["primary"]
        assert unquote(parts.password) == password and mongo_url.count("@") == 1
        bundle = tmp_path / "rds-global-bundle.pem"
        assert query["tlsCAFile"] == [str(bundle)] and bundle.read_bytes() == pem
    finally:
        secrets.documentdb_ca_bundle.cache_clear()


def test_outside_local_mode_a_missing_arn_is_a_config_error(env):
    # A plain value is never read outside local mode.
    env.set(**dict.fromkeys(SECRETS), STOCKPRED_ENV="aws", JWT_SECRET="j" * 40,
            DATABASE_URL="postgresql://postgres@127.0.0.1:1/plain")
    for read, var in ((secrets.jwt_secret, "JWT_SECRET_ARN"),
                      (secrets.service_token, "SERVICE_TOKEN_SECRET_ARN"),
                      (secrets.pseudonym_key, "PSEUDONYM_KEY_SECRET_ARN"),
                      (secrets.database_url, "DATABASE_SECRET_ARN"),
                      (secrets.mongo_url, "MONGO_SECRET_ARN"),
                      (secrets.alphavantage_api_key, "ALPHAVANTAGE_SECRET_ARN")):
        with pytest.raises(ConfigError, match=var):
            read()


def test_local_mode_falls_back_to_the_plain_variables(env):
    env.set(**dict.fromkeys(SECRETS), SERVICE_TOKEN=None, ALPHAVANTAGE_API_KEY=None,
            JWT_SECRET="plain-jwt-secret-" * 3, DATABASE_URL="postgresql://postgres@127.0.0.1:1/plain")
    assert secrets.jwt_secret() == "plain-jwt-secret-" * 3
    assert secrets.database_url() == "postgresql://postgres@127.0.0.1:1/plain"
    assert secrets.alphavantage_api_key() is None
    with pytest.raises(ConfigError, match="SERVICE_TOKEN_SECRET_ARN"):
        secrets.service_token()


def test_alphavantage_key_from_its_secret_and_the_local_override(env, sm):
    env.set(ALPHAVANTAGE_API_KEY=None,
            ALPHAVANTAGE_SECRET_ARN=new_secret(sm, json.dumps({"api_key": "from-secret"})))
    assert secrets.alphavantage_api_key() == "from-secret"
    env.set(ALPHAVANTAGE_SECRET_ARN=new_secret(sm, json.dumps({"api_key": ""})))
    assert secrets.alphavantage_api_key() is None  # an empty key: the provider is off
    env.set(ALPHAVANTAGE_API_KEY="explicit-local-key")
    assert secrets.alphavantage_api_key() == "explicit-local-key"
