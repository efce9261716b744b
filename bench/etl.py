"""Benchmark: the warehouse ETL on 10^5 and 10^6 synthetic ledger rows, in one run.

Synthetic trades (COPY into PostgreSQL, spread over two years) are loaded by one incremental
run each; prints rows per second of the load, the time of the analytics queries over the
resulting warehouse, cold (read from S3) and warm (a warm function's second query), and how many
files the cold query read. Then a late trade arrives for a closed day of every month: the next
run loads them (a new file in each month) and its compaction folds them into the months' files;
prints that run's time and the files a cold query reads before and after.

Run: .venv/bin/python -m bench.etl [--sizes 100000,1000000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import random
import sys
import time
import uuid
from dataclasses import dataclass

from devstack.services import ephemeral_stack, forget_process_clients

TARGET_ROWS_PER_S = 100_000  # at 10^6 rows
TARGET_SIZE = 1_000_000
TARGET_COLD_S = 1.0  # the two-year trading query, cold
TARGET_FILES = 36  # "a few dozen" files for two years


def _copy_trades(lines: list[str]) -> None:
    from stockpred.stores import postgres

    with postgres.transaction() as cur:
        cur.copy_expert("COPY transactions (id, user_id, symbol, side, quantity, price_cents, amount_cents, "
                        "fee_cents, realised_pnl_cents, source, traded_at) FROM STDIN",
                        io.StringIO("".join(lines)))


def _trade_line(rng: random.Random, at: float) -> str:
    price = rng.randint(1_000, 500_000)
    qty = rng.randint(1, 20)
    side = "buy" if rng.random() < 0.6 else "sell"
    pnl = str(rng.randint(-5000, 5000)) if side == "sell" else r"\N"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(at))
    return (f"{uuid.uuid4()}\tu{rng.randint(1, 5000)}\tS{rng.randint(1, 50)}\t{side}\t{qty}\t{price}\t"
            f"{price * qty}\t0\t{pnl}\tbench\t{stamp}\n")


def insert_trades(n: int, seed: int) -> None:
    rng = random.Random(seed)
    start = time.time() - 2 * 365 * 86400
    _copy_trades([_trade_line(rng, start + rng.random() * 2 * 365 * 86400) for _ in range(n)])


def insert_late_trades(seed: int) -> int:
    """One trade on the 1st of each of the last 24 months (each a closed day): all arrive late."""
    rng = random.Random(seed)
    first = dt.datetime.now(dt.UTC).replace(day=1, hour=12, minute=0, second=0, microsecond=0)
    days = []
    for _ in range(24):
        first = (first - dt.timedelta(days=1)).replace(day=1)
        days.append(first.timestamp())
    _copy_trades([_trade_line(rng, at) for at in days])
    return len(days)


@dataclass
class Result:
    rows: int
    load_s: float
    load_cpu_s: float
    cold_s: float
    warm_s: float
    signals_s: float
    files_cold: int
    late_run_s: float
    files_before_compaction: int
    files_after_compaction: int


def _cold_trading() -> tuple[float, int, list[dict]]:
    from stockpred.analytics import lake, reports

    lake._loaded.clear()
    lake.files_read = 0
    t0 = time.perf_counter()
    days = reports.trading()
    return time.perf_counter() - t0, lake.files_read, days


def measure(size: int) -> Result:
    from stockpred.analytics import compaction, etl, reports

    with ephemeral_stack(prefix="stockpred-bench-", extra_env={"STOCKPRED_REDIS_HA": "off"},
                         log=lambda m: print(m, file=sys.stderr)) as (_, env):
        os.environ.update(env)
        forget_process_clients()
        etl.run()  # first run: dimensions and the sample prices, not measured
        insert_trades(size, seed=size)
        t0, cpu0 = time.perf_counter(), time.process_time()
        loaded = etl.run()["loaded"]["fact_trades"]
        load_s, load_cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
        cold_s, files_cold, days = _cold_trading()
        t0 = time.perf_counter()
        reports.trading()
        warm_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        reports.signals(None, None, None)
        signals_s = time.perf_counter() - t0
        assert loaded == size and sum(d["trades"] for d in days) == size

        late = insert_late_trades(seed=size + 1)
        t0 = time.perf_counter()
        result = etl.run(compact_after=False)
        _, files_before, _ = _cold_trading()
        result["compacted"] = compaction.compact()
        late_run_s = time.perf_counter() - t0
        _, files_after, days_after = _cold_trading()
        assert result["loaded"]["fact_trades"] == late and sum(d["trades"] for d in days_after) == size + late
        assert compaction.compact() == {}  # a second compaction finds nothing to do
    return Result(size, load_s, load_cpu_s, cold_s, warm_s, signals_s, files_cold, late_run_s, files_before,
                  files_after)


def _verdict(met: bool) -> str:
    return "MET" if met else "NOT MET"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000", help="ledger rows per run")
    args = parser.parse_args(argv)
    results = [measure(int(n)) for n in args.sizes.split(",")]
    print(f"\nwarehouse ETL of synthetic ledger rows (two years, one partition a month); "
          f"{os.cpu_count()} CPUs")
    print("trading = trades, volume, P&L by day over all of fact_trades: cold reads the Parquet files"
          " from S3, warm reuses what this process read; signals = hit rate by month (predictions)")
    print("load cpu s = this process's CPU time during the load (the machine is shared: wall time"
          " varies with its load; PostgreSQL's and S3's work is not in it)")
    print(f"{'rows':>10}{'load s':>9}{'cpu s':>7}{'rows/s':>9}{'trading cold ms':>17}{'files read':>12}"
          f"{'trading warm ms':>17}{'signals ms':>12}")
    for r in results:
        print(f"{r.rows:>10}{r.load_s:>9.1f}{r.load_cpu_s:>7.1f}{r.rows / r.load_s:>9.0f}"
              f"{r.cold_s * 1000:>17.0f}{r.files_cold:>12}{r.warm_s * 1000:>17.1f}"
              f"{r.signals_s * 1000:>12.1f}")
    print("\nlate rows: one trade on a closed day of each of the last 24 months, loaded by the next run"
          " (a new file in each month), then compacted into the months' files")
    print(f"{'rows':>10}{'run + compaction s':>20}{'files before':>14}{'files after':>13}")
    for r in results:
        print(f"{r.rows:>10}{r.late_run_s:>20.2f}{r.files_before_compaction:>14}{r.files_after_compaction:>13}")

    big = max(results, key=lambda r: r.rows)
    at = "" if big.rows >= TARGET_SIZE else f" (measured at {big.rows} rows; the target is at {TARGET_SIZE})"
    rate = big.rows / big.load_s
    print(f"\ntarget: load >= {TARGET_ROWS_PER_S} rows/s at 10^6 rows  -> {rate:.0f} rows/s "
          f"{_verdict(rate >= TARGET_ROWS_PER_S)}{at}")
    print(f"target: cold two-year trading query < {TARGET_COLD_S:.0f} s  -> {big.cold_s:.2f} s "
          f"{_verdict(big.cold_s < TARGET_COLD_S)}{at}")
    print(f"target: the cold query reads a few dozen files (<= {TARGET_FILES})  -> {big.files_cold} files "
          f"{_verdict(big.files_cold <= TARGET_FILES)}")
    print(f"target: compaction folds late rows back (files after = files before the late rows)  -> "
          f"{big.files_after_compaction} vs {big.files_cold} "
          f"{_verdict(big.files_after_compaction == big.files_cold)}")


if __name__ == "__main__":
    main()
