"""Redis adapter, with state and cache kept apart.

- State (WebSocket rooms, idempotency keys, login counters, breaker state): one replicated
  primary, never resharded: REDIS_URL, or the Sentinel service REDIS_STATE_SERVICE.
- Cache (quotes, histories): shards on a consistent-hash ring (ketama via uhashring); adding or
  removing a shard moves about 1/N of the keys and may lose some, which a cache may do. Shards
  are CACHE_SHARDS (Sentinel service names: each a master with a replica) or CACHE_REDIS_URLS.

With Sentinels (REDIS_SENTINELS) every client finds the current master through them and retries
a failed command with backoff for a bounded time (about 5 s), which covers a failover; cache
reads may fall back to the shard's replica meanwhile.

Every client authenticates with its Redis's AUTH token (default user), read from Secrets Manager
on first use (stockpred.cloud.secrets.redis_auth_token for the state, cache_auth_token for the cache);
none when no secret is configured. A password in a URL itself wins over the secret. The
Sentinels (local only: ElastiCache has none) require the state Redis's token.

TLS follows the URLs: rediss:// (ElastiCache with in-transit encryption, and devstack's Redis)
verifies the server's certificate against the system's trust store, or against
REDIS_TLS_CA_FILE when set (devstack's own CA). Through Sentinels, which have no URL, the
Sentinels and the state's servers speak TLS when REDIS_URL is rediss://, the cache shards' when
CACHE_REDIS_URLS are.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry
from redis.sentinel import Sentinel
from uhashring import HashRing

from stockpred import config
from stockpred.cloud import secrets

TIMEOUTS = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0}


def _retry(tries: int = 10, cap_s: float = 0.5) -> dict[str, object]:
    """Bounded retries with backoff from 50 ms: state rides out a failover (10 tries, about 5 s);
    the cache gives up sooner (3 tries), reads its replica, and else loads from the source."""
    return {"retry": Retry(ExponentialBackoff(cap=cap_s, base=0.05), tries),
            "retry_on_error": [RedisConnectionError, RedisTimeoutError, ReadOnlyError]}


CACHE_RETRY = {"tries": 3, "cap_s": 0.2}


@dataclass
class Shard:
    name: str
    master: redis.Redis
    replica: redis.Redis | None = None


def _password(token: str | None) -> dict[str, str]:
    """`password=` for a client when there is a token (the username stays `default`)."""
    return {"password": token} if token else {}


def _tls(url: str) -> dict[str, object]:
    """For a client of `url`: the CA to verify its certificate with (REDIS_TLS_CA_FILE) when it
    is rediss:// and one is set; rediss:// itself turns TLS on."""
    ca_file = config.load().redis_tls_ca_file
    return {"ssl_ca_certs": ca_file} if ca_file and _is_tls(url) else {}


def _tls_like(url: str) -> dict[str, object]:
    """For a client found through the Sentinels (no URL of its own): TLS as `url` has it."""
    return {"ssl": True, **_tls(url)} if _is_tls(url) else {}


def _is_tls(url: str) -> bool:
    return url.startswith("rediss://")


@functools.cache
def sentinel(addresses: tuple[tuple[str, int], ...]) -> Sentinel:
    return Sentinel(list(addresses),
                    sentinel_kwargs={**TIMEOUTS, **_password(secrets.redis_auth_token()),
                                     **_tls_like(config.load().redis_url)},
                    **TIMEOUTS)


def shard(name_or_url: str, sentinels: tuple[tuple[str, int], ...] = ()) -> Shard:
    auth = _password(secrets.cache_auth_token())
    if sentinels:
        s = sentinel(sentinels)
        urls = config.load().cache_redis_urls
        tls = _tls_like(urls[0]) if urls else {}
        return Shard(name_or_url,
                     s.master_for(name_or_url, **TIMEOUTS, **auth, **tls, **_retry(**CACHE_RETRY)),
                     s.slave_for(name_or_url, **TIMEOUTS, **auth, **tls))
    return Shard(name_or_url,
                 redis.Redis.from_url(name_or_url, **TIMEOUTS, **auth, **_tls(name_or_url),
                                      **_retry(**CACHE_RETRY)))


class CacheRing:
    """Cache shards on a consistent-hash ring: each key lives on exactly one shard."""

    def __init__(self, shards: list[Shard]) -> None:
        if not shards:
            raise ValueError("the cache ring needs at least one shard")
        self.shards = {s.name: s for s in shards}
        self._ring = HashRing(nodes=list(self.shards), hash_fn="ketama")

    @classmethod
    def from_urls(cls, urls: tuple[str, ...]) -> CacheRing:
        return cls([shard(u) for u in urls])

    @property
    def clients(self) -> dict[str, redis.Redis]:
        return {name: s.master for name, s in self.shards.items()}

    def node_for(self, key: str) -> str:
        return self._ring.get_node(key)

    def client_for(self, key: str) -> redis.Redis:
        return self.shards[self.node_for(key)].master

    def replica_for(self, key: str) -> redis.Redis | None:
        return self.shards[self.node_for(key)].replica

    def add(self, new: Shard) -> None:
        self.shards[new.name] = new
        self._ring.add_node(new.name)

    def remove(self, name: str) -> None:
        self.shards.pop(name)
        self._ring.remove_node(name)


@functools.cache
def cache_ring(urls: tuple[str, ...] | None = None) -> CacheRing:
    """The cache as configured: ElastiCache in cluster mode (CACHE_MODE=cluster, the cluster
    spreads keys over its own slots), Sentinel-managed shards, or plain URLs."""
    settings = config.load()
    if urls is None and settings.cache_mode == "cluster" and settings.cache_cluster_url:
        from redis.cluster import RedisCluster

        client = RedisCluster.from_url(settings.cache_cluster_url, **TIMEOUTS,
                                       **_password(secrets.cache_auth_token()),
                                       **_tls(settings.cache_cluster_url))
        return CacheRing([Shard("cluster", client)])
    if urls is None and settings.redis_sentinels and settings.cache_shards:
        return CacheRing([shard(n, settings.redis_sentinels) for n in settings.cache_shards])
    return CacheRing.from_urls(urls or settings.cache_redis_urls)


@functools.cache
def state(url: str | None = None) -> redis.Redis:
    settings = config.load()
    auth = _password(secrets.redis_auth_token())
    if url is None and settings.redis_sentinels:
        return sentinel(settings.redis_sentinels).master_for(
            settings.state_service, **TIMEOUTS, **auth, **_tls_like(settings.redis_url), **_retry())
    url = url or settings.redis_url
    return redis.Redis.from_url(url, **TIMEOUTS, **auth, **_tls(url), **_retry())
