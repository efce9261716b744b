"""Redis over TLS on the session's real Redis processes, as ElastiCache with in-transit
encryption: every server and Sentinel speaks TLS only (a plain-TCP client gets nowhere), its
certificate is verified against the stack's own CA (a client without it is refused), and the
stack's clients (stockpred.stores.redis_stores, with REDIS_TLS_CA_FILE) get in."""

from __future__ import annotations

import stat
import uuid
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from devstack.services import Stack
from stockpred import config
from stockpred.stores import redis_stores
from tests.integration.test_redis_auth import sentinel_ports, server_ports

REFUSED = (redis.ConnectionError, redis.TimeoutError)


def plain(**kwargs: object) -> redis.Redis:
    """A client speaking plain TCP that gives up after one try: a TLS server reads its bytes as
    the start of a record and waits for the rest, so a refusal is a timeout (redis-py's default
    retries would triple each)."""
    return redis.Redis(socket_timeout=1, retry=Retry(NoBackoff(), 0), **kwargs)


def test_the_urls_are_rediss_and_the_ca_is_the_stacks_own(stack):
    for url in (stack["REDIS_URL"], *stack["CACHE_REDIS_URLS"].split(",")):
        assert url.startswith("rediss://127.0.0.1:"), url
    ca = Path(stack["REDIS_TLS_CA_FILE"])
    assert ca.is_file() and ca.parent == Path(stack["STOCKPRED_HOME"]) / "tls"
    assert config.load().redis_tls_ca_file == str(ca)
    for key in ("ca-key.pem", "server-key.pem"):
        assert stat.S_IMODE((ca.parent / key).stat().st_mode) == 0o600, key


def test_a_plain_tcp_client_cannot_talk_to_any_redis_server_or_sentinel(stack):
    ports = server_ports(stack)
    for group, password in (("state", stack["REDIS_PASSWORD"]), ("cache", stack["CACHE_REDIS_PASSWORD"])):
        for port in ports[group]:
            with pytest.raises(REFUSED):
                plain(port=port, password=password).ping()
    urls = [(stack["REDIS_URL"], stack["REDIS_PASSWORD"])]
    urls += [(u, stack["CACHE_REDIS_PASSWORD"]) for u in stack["CACHE_REDIS_URLS"].split(",")]
    for url, password in urls:
        with pytest.raises(REFUSED):
            redis.Redis.from_url(url.replace("rediss://", "redis://"), password=password,
                                 socket_timeout=1, retry=Retry(NoBackoff(), 0)).ping()
    for port in sentinel_ports(stack):
        with pytest.raises(REFUSED):
            plain(port=port, password=stack["REDIS_PASSWORD"]).sentinel_masters()


def test_a_tls_client_without_the_stacks_ca_is_refused_the_certificate(stack):
    urls = [(stack["REDIS_URL"], stack["REDIS_PASSWORD"])]
    urls += [(u, stack["CACHE_REDIS_PASSWORD"]) for u in stack["CACHE_REDIS_URLS"].split(",")]
    urls += [(f"rediss://127.0.0.1:{p}/0", stack["REDIS_PASSWORD"]) for p in sentinel_ports(stack)]
    for url, password in urls:
        with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
            # The system's trust store, as on AWS: it does not know the stack's CA.
            redis.Redis.from_url(url, password=password, socket_timeout=2).ping()
        assert redis.Redis.from_url(url, password=password, socket_timeout=2,
                                    ssl_ca_certs=stack["REDIS_TLS_CA_FILE"]).ping()


def test_the_stacks_clients_speak_tls_through_the_sentinels_and_by_url(stack, fresh):
    key = f"probe:{uuid.uuid4()}"
    state = redis_stores.state()  # found through the Sentinels, over TLS
    state.set(key, "v", ex=60)
    assert state.get(key) == b"v"
    # Earlier failover tests may have made the URL's server a replica: let it catch up.
    state.execute_command("WAIT", len(server_ports(stack)["state"]) - 1, 5000)
    assert state.connection_pool.connection_kwargs["ssl_ca_certs"] == stack["REDIS_TLS_CA_FILE"]
    ring = redis_stores.cache_ring()
    assert len(ring.shards) == 3
    for shard in ring.shards.values():
        assert shard.master.ping() and shard.replica.ping()
    ring.client_for(key).set(key, "c", ex=60)
    assert ring.client_for(key).get(key) == b"c"
    fresh.delenv("REDIS_SENTINELS")
    fresh.delenv("CACHE_SHARDS")
    config.load.cache_clear()
    assert redis_stores.state(stack["REDIS_URL"]).get(key) == b"v"
    by_url = redis_stores.cache_ring(tuple(stack["CACHE_REDIS_URLS"].split(",")))
    assert all(s.master.ping() for s in by_url.shards.values())
    # Its ring names the shards by URL; after an earlier failover a URL may name a replica,
    # which still answers reads over TLS.
    assert by_url.client_for(key).get(key) in (None, b"c")
    assert by_url.client_for(key).connection_pool.connection_kwargs["ssl_ca_certs"] \
        == stack["REDIS_TLS_CA_FILE"]
    # Without the CA (as on AWS, where the system's trust store verifies ElastiCache), the same
    # URLs are refused: the stack's certificate is not one the system trusts.
    fresh.delenv("REDIS_TLS_CA_FILE")
    config.load.cache_clear()
    redis_stores.state.cache_clear()
    pool = redis_stores.state(stack["REDIS_URL"]).connection_pool
    assert "ssl_ca_certs" not in pool.connection_kwargs
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        redis.Redis(connection_pool=pool).ping()  # once, without the client's retries


def test_the_certificates_are_made_once_and_reused(tmp_path):
    stack = Stack(tmp_path / "s", free_ports=True, environ={})
    first = {k: f.read_bytes() for k, f in stack.tls_files().items()}
    again = {k: f.read_bytes() for k, f in Stack(tmp_path / "s", environ={}).tls_files().items()}
    assert first == again
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(first["cert"])
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    ca = x509.load_pem_x509_certificate(first["ca"])
    cert.verify_directly_issued_by(ca)
