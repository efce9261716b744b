"""Read-through cache on the ring, with one upstream call when many miss the same key at once.

Keys are namespaced and versioned (`stockpred:v1:<kind>:<id>`) so a format change never reads
old entries. On a miss the first caller takes a short lock next to the key, reads the key again (a
loader may have finished in between) and loads; the others wait for its value instead of calling
upstream too. A negative answer (unknown symbol) is cached
briefly so repeated nonsense does not reach the provider. When the provider is down, the last
known good copy of a key is served, marked stale with its age, rather than an error.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from stockpred.market.prices import ProviderUnavailable
from stockpred.observability import metrics
from stockpred.stores.redis_stores import CacheRing

NAMESPACE = "stockpred:v1"
MISSING = {"__missing__": True}
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end"


def key(kind: str, ident: str) -> str:
    return f"{NAMESPACE}:{kind}:{ident}"


@dataclass
class Lookup:
    value: Any
    hit: bool
    stale: bool = False
    age_s: float | None = None


class ReadThroughCache:
    def __init__(self, ring: CacheRing, lock_ms: int = 10_000, wait_s: float = 10.0) -> None:
        self.ring = ring
        self.lock_ms = lock_ms
        self.wait_s = wait_s

    def get_or_load(self, cache_key: str, ttl_s: int, load: Callable[[], Any],
                    missing_ttl_s: int = 60, keep_last_s: int = 0,
                    decode: Callable[[bytes], Any] = json.loads) -> Lookup:
        """The cached value or `load()`'s; `None` from load is cached as a miss for missing_ttl_s.

        With keep_last_s, every loaded value is also kept that long as the key's last known good
        copy, served (stale, with its age) when load() raises ProviderUnavailable. `decode` turns
        the stored JSON bytes of a hit into its value (it must give MISSING for a stored miss).
        Counted as CacheHits or CacheMisses (stockpred.observability.metrics).
        """
        found = self._get_or_load(cache_key, ttl_s, load, missing_ttl_s, keep_last_s, decode)
        metrics.count("CacheHits" if found.hit else "CacheMisses")
        return found

    def _get_or_load(self, cache_key: str, ttl_s: int, load: Callable[[], Any], missing_ttl_s: int,
                     keep_last_s: int, decode: Callable[[bytes], Any]) -> Lookup:
        client = self.ring.client_for(cache_key)
        cached = self._read(client, cache_key, decode)
        if cached is not None:
            return Lookup(None if cached == MISSING else cached, True)
        lock = f"{cache_key}:lock"
        token = uuid.uuid4().hex
        if not self._try_lock(client, lock, token):
            waited = self._wait_for(client, cache_key, lock, decode)
            if waited is not None:
                return Lookup(None if waited == MISSING else waited, True)
        last_key = f"{cache_key}:last"
        try:
            # Another caller may have loaded, stored and unlocked between our read and our lock.
            landed = self._read(client, cache_key, decode)
            if landed is not None:
                return Lookup(None if landed == MISSING else landed, True)
            try:
                value = load()
            except ProviderUnavailable:
                last = self._read(self.ring.client_for(last_key), last_key) if keep_last_s else None
                if last is None:
                    raise
                return Lookup(last["value"], False, stale=True, age_s=round(time.time() - last["at"], 1))
            stored = MISSING if value is None else value
            self._write(client, cache_key, stored, missing_ttl_s if value is None else ttl_s)
            if keep_last_s and value is not None:
                self._write(self.ring.client_for(last_key), last_key,
                            {"at": time.time(), "value": value}, keep_last_s)
            return Lookup(value, False)
        finally:
            self._unlock(client, lock, token)

    def forget(self, *cache_keys: str) -> None:
        """Drops entries whose source changed (e.g. after a CSV import); a cache outage is ignored."""
        for cache_key in cache_keys:
            with contextlib.suppress(redis.RedisError):
                self.ring.client_for(cache_key).delete(cache_key)

    def _read(self, client: redis.Redis, cache_key: str,
              decode: Callable[[bytes], Any] = json.loads) -> Any:
        try:
            raw = client.get(cache_key)
        except redis.RedisError:
            raw = self._read_replica(cache_key)
        return None if raw is None else decode(raw)

    def _read_replica(self, cache_key: str) -> bytes | None:
        """While a shard's master is down or being replaced, its replica may still answer."""
        replica = self.ring.replica_for(cache_key)
        if replica is None:
            return None
        try:
            return replica.get(cache_key)
        except redis.RedisError:
            return None

    def _write(self, client: redis.Redis, cache_key: str, value: Any, ttl_s: int) -> None:
        with contextlib.suppress(redis.RedisError):
            client.set(cache_key, json.dumps(value, separators=(",", ":")), ex=max(1, ttl_s))

    def _try_lock(self, client: redis.Redis, lock: str, token: str) -> bool:
        try:
            return bool(client.set(lock, token, nx=True, px=self.lock_ms))
        except redis.RedisError:
            return True

    def _unlock(self, client: redis.Redis, lock: str, token: str) -> None:
        with contextlib.suppress(redis.RedisError):
            client.eval(_RELEASE, 1, lock, token)

    def _wait_for(self, client: redis.Redis, cache_key: str, lock: str,
                  decode: Callable[[bytes], Any]) -> Any:
        deadline = time.monotonic() + self.wait_s
        delay = 0.01
        while time.monotonic() < deadline:
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
            value = self._read(client, cache_key, decode)
            if value is not None:
                return value
            try:
                if not client.exists(lock):
                    return self._read(client, cache_key, decode)
            except redis.RedisError:
                return None
        return None
