"""Cache at scale: a shard master killed under load, the ring resized, the upstream failing.

Runs against the session's topology: 3 cache shards, each a master with a replica, watched by 3
Sentinels, and the local Alpha Vantage (real wire format) that a test can make fail.
"""

import contextlib
import os
import signal
import threading
import time
import uuid

import pytest
import redis

from devstack.chaos import fail_back, restart, sentinel_addresses, stack_sentinel
from devstack.stack_state import redis_client
from devstack.supervisor import wait_until
from stockpred.stores import cache, redis_stores
from stockpred.stores.redis_stores import CacheRing, shard


def test_removing_one_of_three_shards_moves_about_a_third_of_the_keys(stack):
    names = stack["CACHE_SHARDS"].split(",")
    assert len(names) == 3
    ring = CacheRing([shard(n, sentinel_addresses(stack)) for n in names])
    keys = [f"stockpred:test:ring:{uuid.uuid4().hex}" for _ in range(3000)]
    before = {k: ring.node_for(k) for k in keys}
    pipes = {n: s.master.pipeline() for n, s in ring.shards.items()}
    for k, n in before.items():
        pipes[n].set(k, "v", ex=120)
    for p in pipes.values():
        p.execute()

    removed = names[1]
    gone = ring.shards[removed]
    ring.remove(removed)
    after = {k: ring.node_for(k) for k in keys}
    moved = [k for k in keys if after[k] != before[k]]
    assert all(before[k] == removed for k in moved), "only the removed shard's keys move"
    assert 0.2 < len(moved) / len(keys) < 0.45, len(moved) / len(keys)
    stayed = [k for k in keys if k not in set(moved)]
    assert all(ring.client_for(k).get(k) == b"v" for k in stayed[:300]), "the rest still hit"

    ring.add(gone)
    assert {k: ring.node_for(k) for k in keys} == before
    assert all(ring.client_for(k).get(k) == b"v" for k in keys[:300])


def test_breaker_opens_serves_stale_data_and_closes_when_the_upstream_recovers(gateway, fake_alphavantage,
                                                                              stack):
    symbol = "MSFT"
    state = redis_client(stack)
    quote_key = cache.key("quote", symbol)
    ring = redis_stores.cache_ring()

    def expire_quote():
        ring.client_for(quote_key).delete(quote_key)

    fresh = gateway.get(f"/api/stocks/{symbol}/details")
    assert fresh.status_code == 200 and fresh.json()["stale"] is False
    fake_alphavantage.mode = "down"
    try:
        before = fake_alphavantage.total()
        answers = []
        for _ in range(8):
            expire_quote()
            answers.append(gateway.get(f"/api/stocks/{symbol}/details"))
        assert [a.status_code for a in answers] == [200] * 8
        assert all(a.json()["stale"] is True and a.json()["age_seconds"] >= 0 for a in answers)
        assert all(a.json()["price"] == fresh.json()["price"] for a in answers)
        assert answers[-1].headers["X-Cache"] == "STALE"
        assert fake_alphavantage.total() - before == 3, "the breaker let more calls through than fail_max"
        assert state.get("stockpred:breaker:alphavantage:pybreaker:state") == b"open"
        # A symbol never seen before has nothing stale to serve: a clear 503, not a 500.
        assert gateway.get("/api/stocks/AAPL/history", params={"from": "2020-01-01"}).status_code == 503
    finally:
        fake_alphavantage.mode = "ok"
    time.sleep(3.5)
    expire_quote()
    recovered = gateway.get(f"/api/stocks/{symbol}/details")
    assert recovered.status_code == 200 and recovered.json()["stale"] is False
    assert state.get("stockpred:breaker:alphavantage:pybreaker:state") == b"closed"


@pytest.mark.slow
def test_killing_a_shard_master_under_load_fails_over_in_seconds(gateway, stack, stack_handle):
    expected = {s: gateway.get(f"/api/stocks/{s}/details").json()["price"] for s in ("SPX", "IXIC")}
    victim = "cache-0"
    sentinel = stack_sentinel(stack)
    old_master = sentinel.discover_master(victim)
    results: list[tuple[int, bool]] = []
    stop = threading.Event()

    def steady_stream():
        i = 0
        while not stop.is_set():
            symbol = ("SPX", "IXIC")[i % 2]
            i += 1
            try:
                r = gateway.get(f"/api/stocks/{symbol}/details")
                results.append((r.status_code, r.status_code != 200 or r.json()["price"] == expected[symbol]))
            except Exception:
                results.append((0, True))
            # Drop the quote now and then, so requests also write the cache during the failover.
            if i % 10 == 0:
                key = cache.key("quote", symbol)
                # While the shard fails over this may fail: the request stream is what is measured.
                with contextlib.suppress(redis.RedisError):
                    redis_stores.cache_ring().client_for(key).delete(key)

    streams = [threading.Thread(target=steady_stream) for _ in range(4)]
    for t in streams:
        t.start()
    time.sleep(2)
    pid = int(stack_handle.pidfile("redis-cache-0").read_text())
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    failed_over = wait_until(lambda: sentinel.discover_master(victim) != old_master, 30, interval=0.1)
    failover_s = time.monotonic() - killed_at
    time.sleep(3)
    stop.set()
    for t in streams:
        t.join()
    # Bring the old master back: Sentinel turns it into a replica of the new one.
    restart(stack_handle, "redis-cache-0")
    fail_back(sentinel, victim, old_master)
    print(f"\nfailover {failover_s:.1f}s; {len(results)} requests, "
          f"{sum(code != 200 for code, _ in results)} failed")
    assert failed_over and failover_s < 10
    assert len(results) > 50
    failures = sum(code != 200 for code, _ in results)
    assert failures / len(results) < 0.01
    assert all(correct for _, correct in results), "a request returned wrong data"
