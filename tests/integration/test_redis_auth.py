"""Redis AUTH on the session's real Redis processes: every server and Sentinel refuses a client
without its password, the stack's own clients (which read the passwords from moto's Secrets
Manager, as on AWS) get in, and no password shows in a log line, an error or a command line."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import boto3
import pytest
import redis

from devstack.stack_state import SECRET_VARS, redacted, redis_client
from localstack.provision import REDIS_SECRETS
from stockpred import config
from stockpred.cloud import secrets
from stockpred.config import ConfigError
from stockpred.stores import redis_stores


def sentinel_ports(stack: dict[str, str]) -> list[int]:
    return [int(a.rpartition(":")[2]) for a in stack["REDIS_SENTINELS"].split(",")]


def server_ports(stack: dict[str, str]) -> dict[str, list[int]]:
    """The state's and the cache's redis-server ports, replicas included (from the Sentinels)."""
    s = redis_client(stack, port=sentinel_ports(stack)[0])
    ports: dict[str, list[int]] = {"state": [], "cache": []}
    for name, master in s.sentinel_masters().items():
        group = ports["state" if name == "state" else "cache"]
        group.append(int(master["port"]))
        group += [int(r["port"]) for r in s.sentinel_slaves(name)]
    return ports


@pytest.fixture
def sm(stack):
    return boto3.client("secretsmanager", endpoint_url=stack["AWS_ENDPOINT_URL"],
                        region_name=stack["AWS_DEFAULT_REGION"], aws_access_key_id="test",
                        aws_secret_access_key="test")


def test_every_redis_server_and_sentinel_refuses_a_client_without_the_password(stack):
    ports = server_ports(stack)
    assert len(ports["state"]) == 2 and len(ports["cache"]) == 6  # 3 shards, each with a replica
    for group, password in (("state", stack["REDIS_PASSWORD"]), ("cache", stack["CACHE_REDIS_PASSWORD"])):
        cache = group == "cache"
        for port in ports[group]:
            with pytest.raises(redis.AuthenticationError):
                redis_client(stack, port=port, cache=cache, password=None, socket_timeout=2).ping()
            with pytest.raises(redis.AuthenticationError):
                redis_client(stack, port=port, cache=cache, password="not-" + password,
                             socket_timeout=2).ping()
            assert redis_client(stack, port=port, cache=cache, socket_timeout=2).ping()
    for port in sentinel_ports(stack):
        with pytest.raises(redis.AuthenticationError):
            redis_client(stack, port=port, password=None, socket_timeout=2).sentinel_masters()


def test_the_url_clients_refuse_no_password_and_the_state_and_cache_passwords_differ(stack):
    assert stack["REDIS_PASSWORD"] != stack["CACHE_REDIS_PASSWORD"]
    for url in (stack["REDIS_URL"], *stack["CACHE_REDIS_URLS"].split(",")):
        assert "@" not in url  # as on AWS: the URLs carry no password
        with pytest.raises(redis.AuthenticationError):
            redis_client(stack, url, password=None, socket_timeout=2).ping()
    with pytest.raises(redis.AuthenticationError):
        redis_client(stack, cache=True).ping()  # the cache's password, at the state


def test_the_stacks_own_clients_read_the_passwords_from_secrets_manager_and_get_in(stack, sm, fresh):
    assert {var: stack[var] for var in REDIS_SECRETS} == REDIS_SECRETS
    assert (sm.get_secret_value(SecretId=stack["REDIS_AUTH_SECRET_ARN"])["SecretString"]
            == stack["REDIS_PASSWORD"])
    assert (sm.get_secret_value(SecretId=stack["CACHE_AUTH_SECRET_ARN"])["SecretString"]
            == stack["CACHE_REDIS_PASSWORD"])
    # Only the secrets, as a function on AWS: no plain password to fall back to.
    fresh.delenv("REDIS_PASSWORD")
    fresh.delenv("CACHE_REDIS_PASSWORD")
    config.load.cache_clear()
    assert secrets.redis_auth_token() == stack["REDIS_PASSWORD"]
    assert secrets.cache_auth_token() == stack["CACHE_REDIS_PASSWORD"]
    key = f"probe:{uuid.uuid4()}"
    state = redis_stores.state()  # through the Sentinels, which need the password too
    state.set(key, "v", ex=60)
    assert state.get(key) == b"v"
    ring = redis_stores.cache_ring()
    assert len(ring.shards) == 3
    for shard in ring.shards.values():
        assert shard.master.ping()
    ring.client_for(key).set(key, "c", ex=60)
    assert ring.client_for(key).get(key) == b"c"
    # Without Sentinels: the plain URLs, with the same secrets.
    fresh.delenv("REDIS_SENTINELS")
    fresh.delenv("CACHE_SHARDS")
    config.load.cache_clear()
    assert redis_stores.state(stack["REDIS_URL"]).get(key) == b"v"
    assert all(s.master.ping() for s in redis_stores.cache_ring(tuple(stack["CACHE_REDIS_URLS"].split(",")))
               .shards.values())


def test_the_readers_follow_their_own_secret(stack, sm, fresh):
    state_token, cache_token = uuid.uuid4().hex * 2, uuid.uuid4().hex * 2
    for var, token in (("REDIS_AUTH_SECRET_ARN", state_token), ("CACHE_AUTH_SECRET_ARN", cache_token)):
        name = f"test/{uuid.uuid4().hex[:12]}"
        sm.create_secret(Name=name, SecretString=token)
        fresh.setenv(var, name)
    config.load.cache_clear()
    assert (secrets.redis_auth_token(), secrets.cache_auth_token()) == (state_token, cache_token)
    fresh.setenv("REDIS_AUTH_SECRET_ARN", "test/does-not-exist")
    config.load.cache_clear()
    secrets.cache_clear()
    with pytest.raises(ConfigError, match="test/does-not-exist"):
        secrets.redis_auth_token()
    name = f"test/{uuid.uuid4().hex[:12]}"
    sm.create_secret(Name=name, SecretString=" ")
    fresh.setenv("CACHE_AUTH_SECRET_ARN", name)
    config.load.cache_clear()
    with pytest.raises(ConfigError, match="CACHE_AUTH_SECRET_ARN"):
        secrets.cache_auth_token()


def test_no_password_in_a_log_line_an_error_or_a_command_line(stack, sm, fresh, caplog):
    passwords = (stack["REDIS_PASSWORD"], stack["CACHE_REDIS_PASSWORD"])
    # A wrong password: the error says so, without either.
    wrong = "wrong-" + uuid.uuid4().hex
    with pytest.raises(redis.AuthenticationError) as refused:
        redis_client(stack, password=wrong, socket_timeout=2).ping()
    assert wrong not in str(refused.value) and not any(p in str(refused.value) for p in passwords)
    # A kept token that cannot be refreshed goes on serving; the warning names the secret only.
    name = f"test/{uuid.uuid4().hex[:12]}"
    token = uuid.uuid4().hex * 2
    sm.create_secret(Name=name, SecretString=token)
    fresh.setenv("REDIS_AUTH_SECRET_ARN", name)
    fresh.setenv("SECRETS_TTL_SECONDS", "0")
    config.load.cache_clear()
    with caplog.at_level("DEBUG", logger="stockpred"):
        assert secrets.redis_auth_token() == token
        sm.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
        assert secrets.redis_auth_token() == token
    logged = " ".join(r.getMessage() + json.dumps(getattr(r, "fields", {}), default=str)
                      for r in caplog.records if r.name.startswith("stockpred"))
    assert "secret refresh failed" in logged and token not in logged
    # Not in the settings' repr, not in what the CLI prints, not in the stack's logs.
    assert not any(p in repr(config.from_environ(stack)) for p in passwords)
    assert {"REDIS_PASSWORD", "CACHE_REDIS_PASSWORD"} <= set(SECRET_VARS)
    assert not any(p in json.dumps(redacted(stack)) for p in passwords)
    home = Path(stack["STOCKPRED_HOME"])
    for log in (home / "log").glob("*.log"):
        text = log.read_text(errors="replace")
        assert not any(p in text for p in passwords), log
    # Nor on a redis-server's or a Sentinel's command line (`ps` shows it to every user).
    for pidfile in (home / "run").glob("redis-*.pid"):
        cmdline = Path(f"/proc/{pidfile.read_text().strip()}/cmdline").read_bytes().decode(errors="replace")
        assert not any(p in cmdline for p in passwords), pidfile.name
