"""Fault hooks for the trade saga's crash tests: off unless FAULT_INJECTION=on.

When on, the points listed in the state Redis set `stockpred:faults` raise InjectedFault, so a
test can make one participant or the coordinator fail at one step without restarting anything.
"""

from __future__ import annotations

from stockpred import config
from stockpred.stores import redis_stores

KEY = "stockpred:faults"


class InjectedFault(RuntimeError):
    """A failure injected at a named point (a crash, as far as the saga can tell)."""


def check(point: str) -> None:
    if not config.load().fault_injection:
        return
    if redis_stores.state().sismember(KEY, point):
        raise InjectedFault(f"fault injected at {point}")
