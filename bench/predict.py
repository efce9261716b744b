"""Benchmark: `GET /api/predict` with a warm model against the cached details call, in one run.

Both go through devstack over HTTP (proxy event -> warm worker -> Chalice); the ratio is what
matters on a noisy machine. A warm predict reads the cached history from Redis (decoded once per
cache entry in the instance), takes the last bar's features from the instance's feature cache
and reads the stored prediction for (symbol, as_of, model) with one SELECT. Target: warm predict
p50 at most 5x cached details' p50.

Then, in this process and interleaved, what those caches save: the history read decoded afresh
vs warm, and the last bar's features computed on the whole history vs cached. Also times training
for one symbol on the full sample history (the walk-forward record plus the final fit).

Run: .venv/bin/python -m bench.predict [--requests 300]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import requests

from bench._timing import interleaved, p
from devstack.services import ephemeral_stack

SYMBOL = "SPX"
BENCH_ENV = {"DEVSTACK_SCHEDULES": "off", "QUOTE_TTL_SECONDS": "3600"}
TARGET_RATIO = 5.0


def cache_rows(n: int) -> dict[str, list[float]]:
    """In this process: each warm-path step beside what it costs without its cache."""
    from stockml import signals
    from stockpred.market import market_data

    warm = market_data.default()
    warm.history(SYMBOL)
    hist, got = warm.history(SYMBOL)
    if not got.hit or hist.version is None:
        raise RuntimeError(f"{SYMBOL}'s history is not cached")
    signals.features_cache.latest(hist)
    calls = {
        # A MarketData of its own per call has decoded nothing yet (the entry is still a hit).
        "history read, decoded": lambda: market_data.MarketData(warm.providers, warm.cache).history(SYMBOL),
        "history read, warm": lambda: warm.history(SYMBOL),
        "features, computed": lambda: signals.latest_bar(hist.bars),
        "features, cached": lambda: signals.features_cache.latest(hist),
    }
    return {name: lat for name, (lat, _) in interleaved(calls, n, rounds=5).items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="sequential calls per row")
    args = parser.parse_args(argv)
    with ephemeral_stack(prefix="stockpred-bench-", with_gateway=True, extra_env=BENCH_ENV,
                         log=lambda m: print(m, file=sys.stderr)) as (_, env):
        os.environ.update(env)
        api = env["STOCKPRED_API_URL"]
        session = requests.Session()
        t0 = time.perf_counter()
        first = session.get(f"{api}/api/predict/{SYMBOL}", timeout=30)
        accepted = time.perf_counter() - t0
        while first.status_code == 202:  # the model is trained in the retrain function meanwhile
            time.sleep(0.2)
            first = session.get(f"{api}/api/predict/{SYMBOL}", timeout=30)
        first.raise_for_status()
        on_demand = time.perf_counter() - t0

        def call(path: str):
            def run() -> None:
                session.get(api + path, timeout=30).raise_for_status()
            return run

        calls = {"details (cached)": call(f"/api/stocks/{SYMBOL}/details"),
                 "predict (warm model)": call(f"/api/predict/{SYMBOL}")}
        for run in calls.values():
            run()
        rows = {name: lat for name, (lat, _) in interleaved(calls, args.requests, rounds=5).items()}
        steps = cache_rows(max(5, args.requests // 5))

        from stockml import training
        from stockpred.market import market_data

        hist, _ = market_data.default().history(SYMBOL)
        t0 = time.perf_counter()
        meta = training.train(SYMBOL, hist.bars, source=hist.source)
        train_s = time.perf_counter() - t0

    base = p(rows["details (cached)"], 50)
    print(f"\n{SYMBOL}, {len(hist.bars)} daily bars; {args.requests} sequential calls per row, "
          f"interleaved; {os.cpu_count()} CPUs")
    print(f"{'':<24}{'p50 ms':>10}{'p99 ms':>10}{'p50 ratio':>12}")
    for name, lat in rows.items():
        print(f"{name:<24}{p(lat, 50):>10.2f}{p(lat, 99):>10.2f}{p(lat, 50) / base:>11.1f}x")
    ratio = p(rows["predict (warm model)"], 50) / base
    print(f"target: warm predict p50 <= {TARGET_RATIO:.0f}x cached details -> {ratio:.1f}x "
          f"{'MET' if ratio <= TARGET_RATIO else 'NOT MET'}")

    print(f"\nin this process, {len(steps['features, cached'])} calls per row, interleaved:")
    print(f"{'':<24}{'p50 ms':>10}{'p99 ms':>10}")
    for name, lat in steps.items():
        print(f"{name:<24}{p(lat, 50):>10.3f}{p(lat, 99):>10.3f}")
    print(f"\nfirst predict: 202 after {accepted * 1000:.0f} ms, the trained model's 200 after "
          f"{on_demand:.1f} s (training in the retrain function, through devstack)")
    print(f"train one symbol in-process ({meta['kind']}, walk-forward record + final fit): "
          f"{train_s:.1f} s, of which the record's refits are most")


if __name__ == "__main__":
    main()
