"""The read-through cache on real Redis: one upstream load for many simultaneous misses."""

import threading
import time
import uuid

from stockpred.stores import redis_stores
from stockpred.stores.cache import ReadThroughCache
from stockpred.stores.redis_stores import CacheRing


def test_many_concurrent_misses_load_once(stack):
    cache = ReadThroughCache(redis_stores.cache_ring())
    key = f"stockpred:test:{uuid.uuid4()}"
    loads = []

    def load():
        loads.append(1)
        time.sleep(0.3)
        return {"v": 42}

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get_or_load(key, 60, load)))
               for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(loads) == 1
    assert [r.value for r in results] == [{"v": 42}] * 20
    assert sum(not r.hit for r in results) == 1


def test_a_miss_is_remembered_briefly(stack):
    cache = ReadThroughCache(redis_stores.cache_ring())
    key = f"stockpred:test:{uuid.uuid4()}"
    calls = []
    assert cache.get_or_load(key, 60, lambda: calls.append(1), missing_ttl_s=30).value is None
    second = cache.get_or_load(key, 60, lambda: calls.append(1), missing_ttl_s=30)
    assert second.value is None and second.hit and len(calls) == 1


def test_cache_down_still_answers_from_the_loader():
    cache = ReadThroughCache(CacheRing.from_urls(("redis://127.0.0.1:1/0",)))
    got = cache.get_or_load("stockpred:test:down", 60, lambda: {"v": 1})
    assert got.value == {"v": 1} and not got.hit



class _OtherLoadLandsFirst(ReadThroughCache):
    """A caller whose miss was read just before another caller loaded, stored and unlocked."""

    def __init__(self, other_caller) -> None:
        super().__init__(redis_stores.cache_ring())
        self.other_caller = other_caller

    def _try_lock(self, client, lock, token):
        self.other_caller()
        return super()._try_lock(client, lock, token)


def test_a_value_that_lands_between_miss_and_lock_is_not_loaded_again(stack):
    key = f"stockpred:test:{uuid.uuid4()}"
    loads = []

    def load():
        loads.append(1)
        return {"v": 7}

    other = ReadThroughCache(redis_stores.cache_ring())
    late = _OtherLoadLandsFirst(lambda: other.get_or_load(key, 60, load))
    got = late.get_or_load(key, 60, load)
    assert got.value == {"v": 7} and got.hit
    assert len(loads) == 1
