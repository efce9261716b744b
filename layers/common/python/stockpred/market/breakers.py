"""Circuit breakers (pybreaker) with their state on the state Redis, so all instances agree.

A breaker opens after BREAKER_FAIL_MAX consecutive failures and stays open BREAKER_RESET_SECONDS;
then one call is let through (half-open) and its outcome closes or re-opens it. While open,
callers fail at once without reaching the upstream.
"""

from __future__ import annotations

import functools

import pybreaker

from stockpred import config
from stockpred.stores import redis_stores

KNOWN = ("alphavantage",)


@functools.cache
def breaker(name: str, exclude: tuple[type[BaseException], ...] = ()) -> pybreaker.CircuitBreaker:
    storage = pybreaker.CircuitRedisStorage(pybreaker.STATE_CLOSED, redis_stores.state(),
                                            namespace=f"stockpred:breaker:{name}")
    settings = config.load()
    return pybreaker.CircuitBreaker(
        fail_max=settings.breaker_fail_max, reset_timeout=settings.breaker_reset_s,
        exclude=list(exclude), state_storage=storage, name=name)


def states() -> dict[str, dict[str, object]]:
    """Each known breaker's state and failure count, as the state Redis holds them."""
    out: dict[str, dict[str, object]] = {}
    client = redis_stores.state()
    for name in KNOWN:
        prefix = f"stockpred:breaker:{name}:pybreaker"
        state, failures = client.mget(f"{prefix}:state", f"{prefix}:fail_counter")
        out[name] = {"state": (state or b"closed").decode(), "failures": int(failures or 0)}
    return out
