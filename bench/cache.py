"""Benchmark: the cache ring, 3 shards against 1, and how many keys move when the ring changes.

1. Hit ratio and p50/p99 of details through devstack for the same seeded request sequence
   (Zipf-like over 60 imported symbols) on a stack with 1 cache shard and one with 3 (each shard
   a master with a replica under Sentinels), measured back to back in one run.
2. The share of 100,000 keys that move when a 4th shard joins a ring of 3 and when one of 3
   leaves, against the ideal 1/N.

Run: .venv/bin/python -m bench.cache [--requests 2000]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
from pathlib import Path

import requests

from bench._timing import p
from devstack.services import ephemeral_stack, forget_process_clients
from stockpred.stores.redis_stores import CacheRing, Shard

SYMBOLS = [f"B{i:02d}" for i in range(60)]


def write_csvs(folder: Path) -> None:
    for i, symbol in enumerate(SYMBOLS):
        rows = [f"2024-01-{d:02d},{10 + i},{11 + i},{9 + i},{10.5 + i},1000" for d in range(2, 30)]
        (folder / f"{symbol}.csv").write_text("Date,Open,High,Low,Close,Volume\n" + "\n".join(rows) + "\n")


def measure(shards: int, sequence: list[str], folder: Path) -> tuple[float, float, float]:
    """(hit ratio, p50 ms, p99 ms) of the sequence on a fresh stack with `shards` cache shards."""
    import time

    from stockpred.market import csv_prices

    with ephemeral_stack(prefix="stockpred-bench-", with_gateway=True, cache_shards=shards,
                         extra_env={"DEVSTACK_SCHEDULES": "off"},
                         log=lambda m: print(m, file=sys.stderr)) as (_, env):
        os.environ.update(env)
        forget_process_clients()  # the previous stack's clients point at services now gone
        assert csv_prices.import_folder(folder).ok
        session = requests.Session()
        api = env["STOCKPRED_API_URL"]
        session.get(f"{api}/api/stocks/{SYMBOLS[0]}/details", timeout=30).raise_for_status()
        hits, latencies = 0, []
        for symbol in sequence:
            t0 = time.perf_counter()
            r = session.get(f"{api}/api/stocks/{symbol}/details", timeout=30)
            latencies.append(time.perf_counter() - t0)
            r.raise_for_status()
            hits += r.headers["X-Cache"] == "HIT"
    return hits / len(sequence), p(latencies, 50), p(latencies, 99)


def moved_share(before: list[str], after: list[str], keys: list[str]) -> float:
    old = CacheRing([Shard(n, None) for n in before])  # type: ignore[arg-type]
    new = CacheRing([Shard(n, None) for n in after])  # type: ignore[arg-type]
    return sum(old.node_for(k) != new.node_for(k) for k in keys) / len(keys)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="details requests per stack")
    args = parser.parse_args(argv)
    rng = random.Random(7)
    weights = [1 / (i + 1) for i in range(len(SYMBOLS))]
    sequence = rng.choices(SYMBOLS, weights=weights, k=args.requests)
    with tempfile.TemporaryDirectory() as tmp:
        write_csvs(Path(tmp))
        rows = {n: measure(n, sequence, Path(tmp)) for n in (1, 3)}
    keys = [f"stockpred:v1:quote:K{i}" for i in range(100_000)]
    three = ["cache-0", "cache-1", "cache-2"]
    grow = moved_share(three, [*three, "cache-3"], keys)
    shrink = moved_share(three, ["cache-0", "cache-2"], keys)

    print(f"\ncached details through devstack, {args.requests} requests (Zipf over {len(SYMBOLS)} symbols)")
    print(f"{'cache shards':<14}{'hit ratio':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for n, (ratio, p50, p99) in rows.items():
        print(f"{n:<14}{ratio:>10.1%}{p50:>10.2f}{p99:>10.2f}")
    print(f"p50 ratio 3 shards / 1 shard: {rows[3][1] / rows[1][1]:.2f}x")
    print("\nkeys moved when the ring changes (100,000 keys)")
    print(f"  3 -> 4 shards: {grow:.1%} (ideal 1/4 = 25.0%)")
    print(f"  3 -> 2 shards: {shrink:.1%} (ideal 1/3 = 33.3%)")


if __name__ == "__main__":
    main()
