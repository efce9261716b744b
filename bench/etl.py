"""Benchmark: the warehouse ETL on 10^5 and 10^6 synthetic ledger rows, in one run.

Synthetic trades (COPY into PostgreSQL, spread over two years) are loaded by one incremental
run each; prints rows per second of the load and the time of the analytics queries over the
resulting warehouse, cold (read from S3) and warm (a warm function's second query).

Run: .venv/bin/python -m bench.etl [--sizes 100000,1000000]
"""

from __future__ import annotations

import argparse
import io
import os
import random
import sys
import time
import uuid

from devstack.services import ephemeral_stack, forget_process_clients


def insert_trades(n: int, seed: int) -> None:
    from stockpred import postgres

    rng = random.Random(seed)
    buf = io.StringIO()
    start = time.time() - 2 * 365 * 86400
    for _ in range(n):
        price = rng.randint(1_000, 500_000)
        qty = rng.randint(1, 20)
        side = "buy" if rng.random() < 0.6 else "sell"
        at = time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(start + rng.random() * 2 * 365 * 86400))
        pnl = str(rng.randint(-5000, 5000)) if side == "sell" else r"\N"
        buf.write(f"{uuid.uuid4()}\tu{rng.randint(1, 5000)}\tS{rng.randint(1, 50)}\t{side}\t{qty}\t{price}\t"
                  f"{price * qty}\t0\t{pnl}\tbench\t{at}\n")
    buf.seek(0)
    with postgres.transaction() as cur:
        cur.copy_expert("COPY transactions (id, user_id, symbol, side, quantity, price_cents, amount_cents, "
                        "fee_cents, realised_pnl_cents, source, traded_at) FROM STDIN", buf)


def measure(size: int) -> tuple[int, float, float, float]:
    from stockpred import warehouse

    with ephemeral_stack(prefix="stockpred-bench-", extra_env={"STOCKPRED_REDIS_HA": "off"},
                         log=lambda m: print(m, file=sys.stderr)) as (_, env):
        os.environ.update(env)
        forget_process_clients()
        warehouse.run()  # first run: dimensions and the sample prices, not measured
        insert_trades(size, seed=size)
        t0 = time.perf_counter()
        loaded = warehouse.run()["loaded"]["fact_trades"]
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        days = warehouse.trading()
        cold_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        warehouse.trading()
        warm_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        warehouse.signals(None, None, None)
        signals_s = time.perf_counter() - t0
        assert loaded == size and sum(d["trades"] for d in days) == size
    return loaded, load_s, cold_s, warm_s, signals_s


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000", help="ledger rows per run")
    args = parser.parse_args(argv)
    rows = [measure(int(n)) for n in args.sizes.split(",")]
    print(f"\nwarehouse ETL of synthetic ledger rows (two years, one partition a day); {os.cpu_count()} CPUs")
    print("trading = trades, volume, P&L by day over all of fact_trades: cold reads the Parquet files"
          " from S3, warm reuses what this process read; signals = hit rate by month (predictions)")
    print(f"{'rows':>10}{'load s':>9}{'rows/s':>9}{'trading cold ms':>17}{'trading warm ms':>17}"
          f"{'signals ms':>12}")
    for n, load_s, cold_s, warm_s, sig_s in rows:
        print(f"{n:>10}{load_s:>9.1f}{n / load_s:>9.0f}{cold_s * 1000:>17.0f}{warm_s * 1000:>17.1f}"
              f"{sig_s * 1000:>12.1f}")


if __name__ == "__main__":
    main()
