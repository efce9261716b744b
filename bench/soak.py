"""Soak: simulated users browse, predict, subscribe and trade against devstack for a fixed time
while the fault matrix's faults (devstack/chaos.py) are made on a schedule; prints requests
served, errors by kind, p50/p95/p99 per route, and the invariants checked at the end.

Each user is a thread doing, at random, what a dashboard user does: a stock's details, the stock
list, a prediction (202 while its model trains counts as served), the portfolio, and a buy or
sell of 1 SPX with its own Idempotency-Key, sent again with the same key until a final answer
(200 traded, 400 refused) as a careful client retries. One more thread holds a WebSocket
subscribed to SPX, reconnecting when it drops, and one tries two ended tokens (logged out;
older than a password change) again and again.

At the end, after Recovery has run, every order is sent once more with its key (a client that lost
the answer), and then: for every trader, no reservation pending, no transaction
prepared, cash and shares equal to the ledger, one outcome and one transaction per
Idempotency-Key, the ledger
holding exactly the transactions answered 200; no ended token ever accepted; no 5xx or unanswered
request outside a fault's window (from the fault until GRACE_S after it was healed).

Run: .venv/bin/python -m bench.soak [--seconds 120] [--users 6] [--fault-every 20]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import boto3
import psycopg2
import pymongo
import requests
from websockets.exceptions import WebSocketException
from websockets.sync.client import connect as ws_connect

from bench._accounts import PASSWORD, sign_up
from bench._timing import p
from devstack import chaos
from devstack.services import Stack, ephemeral_stack
from stockpred.trading.accounts import Accounts

KEY_DEADLINE_S = 120.0
# Breakers as the e2e suite sets them: a store back is tried again after 3 s, not the default 60.
SOAK_ENV = {"DEVSTACK_SCHEDULES": "off", "BREAKER_FAIL_MAX": "3", "BREAKER_RESET_SECONDS": "3"}
GRACE_S = 10.0  # after a fault is healed: clients reconnect, breakers close (BREAKER_RESET_SECONDS)
NEW_PASSWORD = "another quiet harbour 43"


@dataclass
class Record:
    at: float
    route: str
    status: int  # 0: no HTTP answer (connection refused, reset, timeout)
    seconds: float


@dataclass
class Trader:
    user_id: str
    headers: dict[str, str]
    answers: dict[str, list[requests.Response]] = field(default_factory=dict)  # key -> finals
    orders: dict[str, str] = field(default_factory=dict)  # key -> side


def new_trader(api: str) -> Trader:
    user, token = sign_up(api)
    return Trader(user, {"Authorization": f"Bearer {token}"})


def ended_tokens(api: str) -> list[str]:
    """A logged-out token and a token older than a password change."""
    email = f"soak-{uuid.uuid4().hex[:8]}@example.com"
    requests.post(f"{api}/api/users/register", timeout=30,
                  json={"name": "s", "email": email, "password": PASSWORD}).raise_for_status()
    first, second = (requests.post(f"{api}/api/users/login", timeout=30,
                                   json={"email": email, "password": PASSWORD}).json()["token"]
                     for _ in range(2))
    out = requests.post(f"{api}/api/users/logout", headers={"Authorization": f"Bearer {first}"},
                        timeout=30)
    changed = requests.post(f"{api}/api/users/password", timeout=30,
                            headers={"Authorization": f"Bearer {second}"},
                            json={"current_password": PASSWORD, "new_password": NEW_PASSWORD})
    if out.status_code != 200 or changed.status_code != 200:
        raise RuntimeError(f"could not end the tokens: {out.text} {changed.text}")
    return [first, second]


class Workload:
    """Traders (each also browsing with `browse` > 0), the ended-token prober and, with a
    WebSocket URL, a subscriber, in threads until `stop()`; every answer recorded."""

    def __init__(self, api: str, traders: list[Trader], ended: list[str], *, browse: float = 0.0,
                 ws_url: str | None = None) -> None:
        self.api, self.traders, self.ended, self.browse = api, traders, ended, browse
        self.records: list[Record] = []
        self.ended_accepted: list[Record] = []
        self.unsettled: list[tuple[Trader, str, str]] = []
        self.pushed = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._user, args=(t, i), daemon=True)
                         for i, t in enumerate(traders)]
        self._threads.append(threading.Thread(target=self._probe, daemon=True))
        if ws_url:
            self._threads.append(threading.Thread(target=self._subscribe, args=(ws_url,), daemon=True))

    def _call(self, route: str, method: str, path: str, **kw: object) -> requests.Response | None:
        t0 = time.monotonic()
        try:
            r = requests.request(method, self.api + path, timeout=30, **kw)
        except requests.RequestException:
            self.records.append(Record(time.monotonic(), route, 0, time.monotonic() - t0))
            return None
        self.records.append(Record(time.monotonic(), route, r.status_code, time.monotonic() - t0))
        return r

    def settle(self, trader: Trader, side: str, key: str, deadline: float) -> bool:
        """Sends the order with its key until a final answer (200 or 400)."""
        trader.orders[key] = side
        while time.monotonic() < deadline:
            r = self._call(side, "POST", f"/api/users/{side}",
                           json={"user_id": trader.user_id, "symbol": "SPX", "quantity": 1},
                           headers={**trader.headers, "Idempotency-Key": key})
            if r is not None and r.status_code in (200, 400):
                trader.answers.setdefault(key, []).append(r)
                return True
            time.sleep(0.25)
        return False

    def _user(self, trader: Trader, seed: int) -> None:
        rng = random.Random(seed)
        while not self._stop.is_set():
            if rng.random() < self.browse:
                route, path = rng.choice([("details", "/api/stocks/SPX/details"),
                                          ("stocks", "/api/stocks"),
                                          ("predict", "/api/predict/SPX"),
                                          ("portfolio", "/api/users/portfolio")])
                self._call(route, "GET", path, headers=trader.headers)
                time.sleep(0.05)
                continue
            side, key = ("buy" if rng.random() < 0.6 else "sell"), uuid.uuid4().hex
            if not self.settle(trader, side, key, time.monotonic() + KEY_DEADLINE_S):
                self.unsettled.append((trader, side, key))

    def _probe(self) -> None:
        trader = self.traders[0]
        while not self._stop.is_set():
            self._call("details", "GET", "/api/stocks/SPX/details")
            self._call("portfolio", "GET", "/api/users/portfolio", headers=trader.headers)
            for token in self.ended:
                r = self._call("ended token", "GET", "/api/users/portfolio",
                               headers={"Authorization": f"Bearer {token}"})
                if r is not None and r.status_code == 200:
                    self.ended_accepted.append(self.records[-1])
            time.sleep(0.05)

    def _subscribe(self, ws_url: str) -> None:
        token = self.traders[0].headers["Authorization"].removeprefix("Bearer ")
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                with ws_connect(f"{ws_url}?token={token}", open_timeout=10) as ws:
                    ws.send(json.dumps({"action": "subscribe", "symbol": "SPX"}))
                    while json.loads(ws.recv(timeout=10)).get("type") != "subscribed":
                        pass
                    self.records.append(Record(time.monotonic(), "ws subscribe", 200,
                                               time.monotonic() - t0))
                    while not self._stop.is_set():
                        with contextlib.suppress(TimeoutError):
                            ws.recv(timeout=0.5)
                            self.pushed += 1
            except (OSError, TimeoutError, WebSocketException):
                self.records.append(Record(time.monotonic(), "ws subscribe", 0, time.monotonic() - t0))
                time.sleep(0.5)

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(KEY_DEADLINE_S + 30)
        for trader, side, key in self.unsettled:  # orders whose retries ran out during a fault
            if not self.settle(trader, side, key, time.monotonic() + 30):
                raise RuntimeError(f"{side} {key} never got a final answer")
        self.unsettled.clear()

    def replay(self) -> None:
        """Sends every order again with its key, as a client that lost the answer does: after a
        fault that lost the Redis record of a key, this is the retry that once traded twice."""
        def again(trader: Trader) -> None:
            for key, side in list(trader.orders.items()):
                if not self.settle(trader, side, key, time.monotonic() + 30):
                    raise RuntimeError(f"the replay of {side} {key} got no final answer")

        threads = [threading.Thread(target=again, args=(t,)) for t in self.traders]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def failed(records: list[Record]) -> list[Record]:
    """The requests answered 5xx or not at all."""
    return [r for r in records if r.status == 0 or r.status >= 500]


def failed_outside(records: list[Record], faults: list[tuple[float, float]]) -> list[Record]:
    """The failed requests outside every fault's window: from the fault (monotonic seconds) until
    GRACE_S after it was healed."""
    return [r for r in failed(records)
            if not any(began <= r.at <= healed + GRACE_S for began, healed in faults)]


def run_recovery(api: str, env: Mapping[str, str]) -> dict:
    """The Recovery function, now, for every transaction (devstack's Lambda Invoke API)."""
    client = boto3.client("lambda", endpoint_url=api, region_name="us-east-1",
                          aws_access_key_id=env.get("AWS_ACCESS_KEY_ID", "test"),
                          aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY", "test"))
    out = client.invoke(FunctionName="RecoveryFunction", Payload=json.dumps({"older_than_seconds": 0}))
    payload = out["Payload"].read()
    if "FunctionError" in out:
        raise RuntimeError(f"Recovery failed: {payload!r}")
    return json.loads(payload)


def violations(env: Mapping[str, str], load: Workload, start_cents: int) -> list[str]:
    """What a user or an auditor would object to, after the run and Recovery; empty when none."""
    found = [f"an ended token was accepted at {r.at:.1f}" for r in load.ended_accepted[:3]]
    accounts = Accounts(pymongo.MongoClient(env["MONGO_URL"])["stockpred"])
    conn = psycopg2.connect(env["DATABASE_URL"])
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_prepared_xacts WHERE gid LIKE 'trade-%'")
            if (prepared := cur.fetchone()[0]):
                found.append(f"{prepared} ledger transactions still prepared")
            for trader in load.traders:
                cur.execute("SELECT id::text, symbol, side, quantity, price_cents, amount_cents "
                            "FROM transactions WHERE user_id = %s", (trader.user_id,))
                rows = cur.fetchall()
                found += _trader_violations(trader, accounts.state(trader.user_id), rows, start_cents)
    finally:
        conn.close()
    return found


def _trader_violations(trader: Trader, state, rows: list[tuple], start_cents: int) -> list[str]:
    who = trader.user_id
    found = []
    if state.reserved_cash_cents or any(state.reserved_shares.values()):
        found.append(f"{who}: a reservation is pending")
    cash, shares = start_cents, {}
    for _id, symbol, side, qty, price, amount in rows:
        if amount != qty * price:
            found.append(f"{who}: a ledger row's amount is not quantity x price")
        shares[symbol] = shares.get(symbol, 0) + (qty if side == "buy" else -qty)
        cash += -amount if side == "buy" else amount
    if cash != state.cash_cents:
        found.append(f"{who}: cash {state.cash_cents} but the ledger says {cash}")
    held = {s: h.shares for s, h in state.holdings.items() if h.shares}
    if held != {s: n for s, n in shares.items() if n}:
        found.append(f"{who}: holds {held} but the ledger says {shares}")
    traded: set[str] = set()
    for key, answers in trader.answers.items():
        ids = {a.json()["transaction_id"] for a in answers if a.status_code == 200}
        if len(ids) > 1:
            found.append(f"{who}: Idempotency-Key {key} traded {len(ids)} times")
        if len({a.status_code for a in answers}) > 1:
            found.append(f"{who}: Idempotency-Key {key} answered "
                         f"{[a.status_code for a in answers]}: a retry changed the outcome")
        traded |= ids
    if {r[0] for r in rows} != traded:
        found.append(f"{who}: the ledger's transactions differ from those answered 200")
    return found


def report(load: Workload, seconds: float, faults: list[tuple[float, float, str]]) -> str:
    """Requests served, errors by kind, and latency percentiles per route."""
    lines = [f"{len(load.records)} requests in {seconds:.0f} s "
             f"({len(load.records) / seconds:.1f}/s), {len(faults)} faults, "
             f"{load.pushed} WebSocket messages"]
    for at, healed, name in faults:
        lines.append(f"  fault at {at:6.1f}s for {healed - at:4.1f}s: {name}")
    kinds: dict[str, int] = {}
    for r in load.records:
        kind = ("no answer" if r.status == 0 else "5xx" if r.status >= 500
                else "429" if r.status == 429 else None)
        if kind:
            kinds[kind] = kinds.get(kind, 0) + 1
    lines.append("errors by kind: " + (", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
                                       or "none"))
    lines.append(f"{'route':<14}{'served':>8}{'errors':>8}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}")
    for route in sorted({r.route for r in load.records}):
        mine = [r for r in load.records if r.route == route]
        ok = [r.seconds for r in mine if 0 < r.status < 500]
        row = f"{route:<14}{len(ok):>8}{len(mine) - len(ok):>8}"
        row += (f"{p(ok, 50):>10.1f}{p(ok, 95):>10.1f}{p(ok, 99):>10.1f}" if len(ok) >= 2 else "")
        lines.append(row)
    return "\n".join(lines)


def soak(stack: Stack, env: Mapping[str, str], *, seconds: float, users: int, fault_every: float,
         faults: list[str], log: Callable[[str], None] = print) -> tuple[Workload, list[str], str]:
    """Runs the workload for `seconds`, a fault from `faults` (in turn) every `fault_every`
    seconds; returns the workload, the violations found and the report."""
    api = env["STOCKPRED_API_URL"]
    load = Workload(api, [new_trader(api) for _ in range(users)], ended_tokens(api), browse=0.5,
                    ws_url=env.get("STOCKPRED_WS_URL"))
    made: list[tuple[float, float, str]] = []
    t0 = time.monotonic()
    load.start()
    try:
        turn = 0
        # Each fault is followed by at least half a period of load before the run ends.
        while faults and fault_every * (turn + 1.5) <= seconds:
            time.sleep(max(0.0, t0 + fault_every * (turn + 1) - time.monotonic()))
            name = faults[turn % len(faults)]
            log(f"[soak] {time.monotonic() - t0:6.1f}s: {name}")
            at = time.monotonic() - t0
            with chaos.FAULTS[name](stack, env):
                pass
            made.append((at, time.monotonic() - t0, name))
            turn += 1
        time.sleep(max(0.0, t0 + seconds - time.monotonic()))
    finally:
        load.stop()
    elapsed = time.monotonic() - t0
    run_recovery(api, env)
    load.replay()
    found = violations(env, load, int(env.get("STARTING_CASH_CENTS", "10000000")))
    outside = failed_outside(load.records, [(t0 + at, t0 + healed) for at, healed, _ in made])
    found += [f"{r.route} answered {r.status or 'nothing'} at {r.at - t0:.1f}s, outside every "
              f"fault's window" for r in outside[:5]]
    return load, found, report(load, elapsed, made)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120, help="how long the load runs (120)")
    parser.add_argument("--users", type=int, default=6, help="simulated users (6)")
    parser.add_argument("--fault-every", type=float, default=20, help="seconds between faults (20)")
    parser.add_argument("--faults", default="all",
                        help=f"comma-separated, from: {', '.join(chaos.FAULTS)}; 'none', or 'all' "
                             "(those this process can make: the failover needs root and iptables)")
    args = parser.parse_args(argv)
    if args.faults == "all":
        faults = chaos.available()
    elif args.faults == "none":
        faults = []
    else:
        faults = [f.strip() for f in args.faults.split(",")]
        if unknown := [f for f in faults if f not in chaos.FAULTS]:
            parser.error(f"unknown faults: {unknown}")
    with ephemeral_stack(prefix="stockpred-bench-", with_gateway=True, cache_shards=3,
                         extra_env=SOAK_ENV,
                         log=lambda m: print(m, file=sys.stderr)) as (stack, env):
        _, found, text = soak(stack, env, seconds=args.seconds, users=args.users,
                              fault_every=args.fault_every, faults=faults)
    print(f"\nsoak: {args.users} users, {os.cpu_count()} CPUs\n{text}")
    print("invariants: " + ("all held" if not found else "VIOLATED\n  " + "\n  ".join(found)))
    if found:
        sys.exit(1)


if __name__ == "__main__":
    main()
