"""Benchmark: a full buy through devstack (saga on moto's Step Functions engine), in one run.

Prints trades per second (sequential, and from N client threads, each phase after its own
warm-up, so neither pays for starting workers), p50/p99 of a buy, the target (N threads at
least TARGET_SPEEDUP x the sequential rate) beside the result, and where a buy's time goes,
from each execution's own history: inside Lambda tasks (participants, the quote, the decision:
the HTTP hop to devstack included), in the state machine engine between tasks, and in the buy
function around the execution (intent row, StartExecution, waiting for the participants'
signal, DescribeExecution).

Run: .venv/bin/python -m bench.trade [--trades 60] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import sys
import time

import boto3
import requests

from bench._accounts import sign_up
from bench._timing import p
from devstack.services import ephemeral_stack

TARGET_SPEEDUP = 1.6  # issue 15: 8 clients should not wait 7x longer than one
WARMUP_PER_THREAD = 2
SAGA_FUNCTIONS = ("QuoteStepFunction", "AccountStepFunction", "LedgerStepFunction",
                  "DecisionStepFunction")
BENCH_ENV = {"DEVSTACK_SCHEDULES": "off", "QUOTE_TTL_SECONDS": "3600",
             "STARTING_CASH_CENTS": str(10**13)}


def new_trader(api: str) -> tuple[str, dict[str, str]]:
    user, token = sign_up(api)
    return user, {"Authorization": f"Bearer {token}"}


def buy(session: requests.Session, api: str, user: str, headers: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    r = session.post(f"{api}/api/users/buy", json={"user_id": user, "symbol": "SPX", "quantity": 1},
                     headers=headers, timeout=60)
    r.raise_for_status()
    return time.perf_counter() - t0, r.json()["transaction_id"]


def warm_saga_workers(env: dict[str, str], instances: int) -> None:
    """Starts `instances` warm workers of each saga function at once (an empty event, which each
    refuses without touching anything), so that the measured phase starts none: devstack's pool
    grows only when every worker is busy, which a short warm-up may never reach."""
    lam = boto3.client("lambda", endpoint_url=env["AWS_ENDPOINT_URL_LAMBDA"],
                       region_name=env["AWS_DEFAULT_REGION"], aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                       aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    calls = [fn for fn in SAGA_FUNCTIONS for _ in range(instances)]
    with cf.ThreadPoolExecutor(len(calls)) as pool:
        list(pool.map(lambda fn: lam.invoke(FunctionName=fn, Payload=b"{}"), calls))


def _union(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def split(sfn, arn_prefix: str, txid: str) -> tuple[float, float]:
    """(seconds inside Lambda tasks, seconds of the whole execution) from its history."""
    events = sfn.get_execution_history(executionArn=f"{arn_prefix}:{txid}", maxResults=1000)["events"]
    ts = [e["timestamp"].timestamp() for e in events]
    started: list[float] = []
    tasks = []
    for e, t in zip(events, ts, strict=True):
        if e["type"] == "LambdaFunctionStarted":
            started.append(t)
        elif e["type"] in ("LambdaFunctionSucceeded", "LambdaFunctionFailed") and started:
            tasks.append((started.pop(0), t))
    return _union(tasks), ts[-1] - ts[0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=60, help="buys per measurement (60)")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads (8)")
    args = parser.parse_args(argv)
    with ephemeral_stack(prefix="stockpred-bench-", with_gateway=True, extra_env=BENCH_ENV,
                         log=lambda m: print(m, file=sys.stderr)) as (_, env):
        api = env["STOCKPRED_API_URL"]
        sfn = boto3.client("stepfunctions", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                           aws_access_key_id="test", aws_secret_access_key="test")
        prefix = "arn:aws:states:us-east-1:123456789012:execution:TradeStateMachine"
        user, headers = new_trader(api)
        session = requests.Session()
        for _ in range(5):
            buy(session, api, user, headers)
        t0 = time.perf_counter()
        seq = [buy(session, api, user, headers) for _ in range(args.trades)]
        seq_wall = time.perf_counter() - t0

        traders = [new_trader(api) for _ in range(args.concurrency)]
        pools = requests.get(f"{api}/_devstack/health", timeout=30).json()["pools"]
        warm_saga_workers(env, min(args.concurrency, pools["invoke"]["workers"]))
        per = max(1, args.trades // args.concurrency)

        def run(i: int, n: int) -> list[tuple[float, str]]:
            s = requests.Session()
            return [buy(s, api, *traders[i]) for _ in range(n)]

        with cf.ThreadPoolExecutor(args.concurrency) as pool:
            # Warm-up: as many warm workers as this concurrency needs, as the sequential phase had.
            list(pool.map(run, range(args.concurrency), [WARMUP_PER_THREAD] * args.concurrency))
            t0 = time.perf_counter()
            conc = [x for chunk in pool.map(run, range(args.concurrency), [per] * args.concurrency)
                    for x in chunk]
            conc_wall = time.perf_counter() - t0
        shares = [(lat, *split(sfn, prefix, txid)) for lat, txid in seq]

    lat = [x for x, _ in seq]
    total = sum(s[0] for s in shares)
    in_tasks = sum(s[1] for s in shares)
    in_execution = sum(s[2] for s in shares)
    print(f"\nbuy 1 SPX through devstack: {args.trades} sequential, then {per * args.concurrency} from "
          f"{args.concurrency} threads (one trader each); {os.cpu_count()} CPUs")
    print(f"{'':<28}{'trades/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    print(f"{'sequential':<28}{len(seq) / seq_wall:>10.1f}{p(lat, 50):>10.1f}{p(lat, 99):>10.1f}")
    clat = [x for x, _ in conc]
    print(f"{f'{args.concurrency} threads':<28}{len(conc) / conc_wall:>10.1f}{p(clat, 50):>10.1f}"
          f"{p(clat, 99):>10.1f}")
    speedup = (len(conc) / conc_wall) / (len(seq) / seq_wall)
    print(f"target: {args.concurrency} threads >= {TARGET_SPEEDUP}x sequential trades/s -> {speedup:.3f}x "
          f"{'MET' if speedup >= TARGET_SPEEDUP else 'NOT MET'}")
    print("\nwhere a sequential buy's time goes (share of the request):")
    print(f"  Lambda tasks (quote, prepare x2, decide, commit x2; parallel overlap counted once) "
          f"{in_tasks / total:6.1%}")
    print(f"  state machine engine between tasks                                     "
          f"{(in_execution - in_tasks) / total:6.1%}")
    print(f"  buy function around the execution (intent, start, signal, describe)     "
          f"{(total - in_execution) / total:6.1%}")


if __name__ == "__main__":
    main()
