"""Timing helpers shared by the benchmarks: sequential latencies, interleaved rows, percentiles."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

Call = Callable[[], None]


def timed(call: Call, n: int) -> list[float]:
    """Latencies in seconds of n sequential calls."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        out.append(time.perf_counter() - t0)
    return out


def interleaved(calls: dict[str, Call], n: int, rounds: int) -> dict[str, tuple[list[float], float]]:
    """Each call n times, in `rounds` alternating slices so machine noise hits all rows alike.

    Returns per row its latencies and the wall time spent on it.
    """
    lat: dict[str, list[float]] = {name: [] for name in calls}
    wall = dict.fromkeys(calls, 0.0)
    per_round = max(1, n // rounds)
    for _ in range(rounds):
        for name, call in calls.items():
            t0 = time.perf_counter()
            lat[name] += timed(call, per_round)
            wall[name] += time.perf_counter() - t0
    return {name: (lat[name], wall[name]) for name in calls}


def p(lat: list[float], q: int) -> float:
    """The q-th percentile in ms."""
    return statistics.quantiles(lat, n=100, method="inclusive")[q - 1] * 1000
