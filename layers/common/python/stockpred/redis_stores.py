"""Redis adapter, with state and cache kept apart.

- State (WebSocket rooms, idempotency keys, login counters, breaker state): one replicated
  primary at REDIS_URL, never resharded.
- Cache (quotes, histories): shards at CACHE_REDIS_URLS on a consistent-hash ring (ketama via
  uhashring); adding or removing a shard moves about 1/N of the keys and may lose some, which a
  cache may do.
"""

from __future__ import annotations

import functools

import redis
from uhashring import HashRing

from stockpred import config


class CacheRing:
    """Cache shards on a consistent-hash ring: each key lives on exactly one shard."""

    def __init__(self, urls: tuple[str, ...]) -> None:
        if not urls:
            raise ValueError("the cache ring needs at least one shard")
        self.clients = {
            url: redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
            for url in urls
        }
        self._ring = HashRing(nodes=list(urls), hash_fn="ketama")

    def node_for(self, key: str) -> str:
        return self._ring.get_node(key)

    def client_for(self, key: str) -> redis.Redis:
        return self.clients[self.node_for(key)]


@functools.cache
def cache_ring(urls: tuple[str, ...] | None = None) -> CacheRing:
    return CacheRing(urls or config.load().cache_redis_urls)


@functools.cache
def state(url: str | None = None) -> redis.Redis:
    return redis.Redis.from_url(url or config.load().redis_url, socket_timeout=2,
                                socket_connect_timeout=2)
