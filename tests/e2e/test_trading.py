"""Trading end to end: buy and sell through the saga, under concurrency, retries and crashes.

Every scenario ends by checking what a user and an auditor would: cash plus holdings at the
traded prices is conserved, the ledger agrees with the holdings, no PostgreSQL transaction is
left prepared and no reservation is left pending.
"""

import concurrent.futures as cf
import datetime as dt
import json
import os
import subprocess
import sys
import time
import uuid

import boto3
import psycopg2
import pymongo
import pytest

from devstack.services import REPO_ROOT
from devstack.stack_state import redis_client
from stockpred.cloud import secrets
from stockpred.trading.accounts import Accounts

pytestmark = pytest.mark.usefixtures("flush_cache")
START = 10_000_000
SPX_CENTS = 250_685  # the sample's last close, 2506.850098, in cents


def register(gateway):
    user = gateway.new_user()
    return user.user_id, user.headers


def trade(gateway, side, user, headers, symbol="SPX", quantity=1, key=None):
    h = dict(headers)
    if key:
        h["Idempotency-Key"] = key
    return gateway.post(f"/api/users/{side}", json={"user_id": user, "symbol": symbol,
                                                    "quantity": quantity}, headers=h)


def accounts(stack):
    return Accounts(pymongo.MongoClient(stack["MONGO_URL"])["stockpred"])


def ledger_rows(stack, user):
    conn = psycopg2.connect(stack["DATABASE_URL"])
    with conn.cursor() as cur:
        cur.execute("SELECT symbol, side, quantity, price_cents, amount_cents FROM transactions "
                    "WHERE user_id = %s", (user,))
        rows = cur.fetchall()
    conn.close()
    return rows


def prepared_count(stack):
    conn = psycopg2.connect(stack["DATABASE_URL"])
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_prepared_xacts WHERE gid LIKE 'trade-%'")
        n = cur.fetchone()[0]
    conn.close()
    return n


def assert_consistent(stack, user, start_cents=START):
    state = accounts(stack).state(user)
    rows = ledger_rows(stack, user)
    assert state.reserved_cash_cents == 0 and not state.reserved_shares, "a reservation is pending"
    assert prepared_count(stack) == 0, "a ledger transaction is still prepared"
    shares: dict[str, int] = {}
    cash = start_cents
    for symbol, side, qty, _price, amount in rows:
        shares[symbol] = shares.get(symbol, 0) + (qty if side == "buy" else -qty)
        cash += -amount if side == "buy" else amount
    assert {s: n for s, n in shares.items() if n} == {s: h.shares for s, h in state.holdings.items()}
    assert state.cash_cents == cash, "the ledger and the account disagree on cash"
    value = state.cash_cents + sum(h.shares * SPX_CENTS for s, h in state.holdings.items()
                                   if s == "SPX")
    if set(state.holdings) <= {"SPX"}:
        assert value == start_cents, "money was created or lost"
    return state, rows


def set_faults(stack, *points):
    r = redis_client(stack)
    r.delete("stockpred:faults")
    if points:
        r.sadd("stockpred:faults", *points)


def run_recovery(gateway):
    client = boto3.client("lambda", endpoint_url=gateway.url, region_name="us-east-1",
                          aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"])
    out = client.invoke(FunctionName="RecoveryFunction", Payload=json.dumps({"older_than_seconds": 0}))
    assert "FunctionError" not in out, out["Payload"].read()
    return json.loads(out["Payload"].read())


def test_buy_then_sell_moves_cash_shares_and_ledger(gateway, stack):
    user, h = register(gateway)
    r = trade(gateway, "buy", user, h, quantity=3)
    assert r.status_code == 200, r.text
    assert r.json()["message"] == "Stock bought successfully" and r.json()["transaction_id"]
    r = trade(gateway, "sell", user, h, quantity=1)
    assert r.status_code == 200 and r.json()["message"] == "Stock sold successfully"
    state, rows = assert_consistent(stack, user)
    assert state.holdings["SPX"].shares == 2
    assert state.cash_cents == START - 2 * SPX_CENTS
    assert sorted((side, qty) for _, side, qty, _, _ in rows) == [("buy", 3), ("sell", 1)]
    portfolio = gateway.get("/api/users/portfolio", headers=h).json()
    assert portfolio["holdings"][0]["shares"] == 2 and portfolio["cash_cents"] == state.cash_cents
    listed = gateway.get("/api/transactions", params={"user_id": user}, headers=h).json()
    assert len(listed["transactions"]) == 2


def test_refusals_change_nothing(gateway, stack):
    user, h = register(gateway)
    r = trade(gateway, "buy", user, h, quantity=1000)
    assert r.status_code == 400 and r.json()["error"].startswith("Insufficient cash")
    r = trade(gateway, "sell", user, h, quantity=1)
    assert r.status_code == 400 and r.json()["error"].startswith("Insufficient shares")
    r = trade(gateway, "buy", user, h, symbol="ZZZZ")
    assert r.status_code == 400 and r.json()["error"] == "Stock data not available"
    state, rows = assert_consistent(stack, user)
    assert rows == [] and state.cash_cents == START and not state.holdings


@pytest.mark.parametrize("body,field", [
    ({"symbol": "SPX", "quantity": 1}, "user_id"),
    ({"symbol": "SP$X", "quantity": 1}, "symbol"),
    ({"symbol": {"$ne": None}, "quantity": 1}, "symbol"),
    ({"symbol": "SPX", "quantity": 0}, "quantity"),
    ({"symbol": "SPX", "quantity": 1.5}, "quantity"),
    ({"symbol": "SPX", "quantity": "1"}, "quantity"),
    ({"symbol": "SPX", "quantity": True}, "quantity"),
    ({"symbol": "SPX", "quantity": 10**9}, "quantity"),
])
def test_bad_trade_bodies_are_400(gateway, body, field):
    user, h = register(gateway)
    body = {"user_id": user, **body} if field != "user_id" else body
    r = gateway.post("/api/users/buy", json=body, headers=h)
    assert r.status_code == 400 and field in r.json()["fields"]


def test_trading_needs_your_own_token(gateway):
    user, h = register(gateway)
    other, _ = register(gateway)
    assert trade(gateway, "buy", user, {}).status_code == 401
    r = trade(gateway, "buy", other, h)
    assert r.status_code == 403
    assert gateway.post("/api/users/buy", data=b"{not json", headers=h).status_code == 400
    assert gateway.get("/api/transactions", params={"user_id": other}, headers=h).status_code == 403


def test_same_idempotency_key_five_times_trades_once(gateway, stack):
    user, h = register(gateway)
    key = uuid.uuid4().hex
    first = trade(gateway, "buy", user, h, quantity=2, key=key)
    with cf.ThreadPoolExecutor(4) as pool:
        again = list(pool.map(lambda _: trade(gateway, "buy", user, h, quantity=2, key=key), range(4)))
    ids = {r.json()["transaction_id"] for r in [first, *again]}
    assert [r.status_code for r in [first, *again]] == [200] * 5 and len(ids) == 1
    state, rows = assert_consistent(stack, user)
    assert len(rows) == 1 and state.holdings["SPX"].shares == 2
    r = trade(gateway, "buy", user, h, quantity=3, key=key)
    assert r.status_code == 422


def test_concurrent_idempotent_first_requests_trade_once(gateway, stack):
    user, h = register(gateway)
    key = uuid.uuid4().hex
    with cf.ThreadPoolExecutor(5) as pool:
        responses = list(pool.map(lambda _: trade(gateway, "buy", user, h, key=key), range(5)))
    assert {r.status_code for r in responses} == {200}
    assert len({r.json()["transaction_id"] for r in responses}) == 1
    assert len(ledger_rows(stack, user)) == 1


def import_block(stack, tmp_path):
    """BLOCK: a CSV symbol quoted at exactly 10,000.00, so 100,000.00 buys exactly ten."""
    folder = tmp_path / "block"
    folder.mkdir()
    (folder / "BLOCK.csv").write_text("Date,Open,High,Low,Close,Volume\n"
                                      "2024-01-02,10000,10000,10000,10000,100\n"
                                      "2024-01-03,10000,10000,10000,10000,100\n")
    out = subprocess.run([sys.executable, "-m", "devstack.cli", "import-csv", str(folder)],
                         env={**os.environ, **stack}, capture_output=True, text=True, cwd=REPO_ROOT)
    assert out.returncode == 0, out.stderr


@pytest.mark.slow
def test_fifty_concurrent_buys_with_cash_for_ten(gateway, stack, tmp_path):
    import_block(stack, tmp_path)
    user, h = register(gateway)
    with cf.ThreadPoolExecutor(50) as pool:
        responses = list(pool.map(lambda _: trade(gateway, "buy", user, h, symbol="BLOCK"), range(50)))
    codes = [r.status_code for r in responses]
    assert codes.count(200) == 10 and codes.count(400) == 40, codes
    assert all(r.json()["error"].startswith("Insufficient cash") for r in responses
               if r.status_code == 400)
    balance = 0
    for entry in accounts(stack).db.account_entries.find({"account": user}).sort("seq", 1):
        balance += entry.get("cash_cents", 0)
        assert balance >= 0
    state, rows = assert_consistent(stack, user)
    assert state.cash_cents == 0 and state.holdings["BLOCK"].shares == 10 and len(rows) == 10


@pytest.mark.slow
@pytest.mark.parametrize("point,traded", [
    ("users.prepare", False),
    ("ledger.prepare", False),
    ("users.commit", True),
    ("ledger.commit", True),
    ("coordinator.before_decision", False),
    ("coordinator.after_decision", True),
])
def test_a_crash_at_any_step_ends_everywhere_or_nowhere(gateway, stack, point, traded):
    user, h = register(gateway)
    assert trade(gateway, "buy", user, h, quantity=2).status_code == 200
    set_faults(stack, point)
    try:
        r = trade(gateway, "sell", user, h, quantity=1)
    finally:
        set_faults(stack)
    assert r.status_code == 500, r.text
    assert r.json()["error"] == "An error occurred processing the sell request"
    run_recovery(gateway)
    state, rows = assert_consistent(stack, user)
    assert state.holdings["SPX"].shares == (1 if traded else 2)
    assert len(rows) == (2 if traded else 1)
    assert run_recovery(gateway)["finished"] == {}


def test_a_lost_completion_signal_still_answers_the_trade(gateway, stack):
    # The participants' signal only tells the buy function when to ask Step Functions; without
    # it the buy still ends with the execution's own outcome (DescribeExecution every 0.5 s).
    user, h = register(gateway)
    set_faults(stack, "participants.signal")
    try:
        bought = trade(gateway, "buy", user, h, quantity=2)
        sold = trade(gateway, "sell", user, h, quantity=3)
    finally:
        set_faults(stack)
    assert bought.status_code == 200, bought.text
    assert bought.json()["price"] == f"{SPX_CENTS / 100:.2f}"
    assert sold.status_code == 400 and sold.json()["error"].startswith("Insufficient shares"), sold.text
    state, rows = assert_consistent(stack, user)
    assert state.holdings["SPX"].shares == 2 and len(rows) == 1


STORE = {"user_id": "u-1", "symbol": "SPX", "quantity": 2, "action": "buy", "price": 2506.85,
         # /store accepts only times within the last 24 hours (tests/security/test_ledger_and_saga.py)
         "timestamp": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()}


def test_store_needs_a_service_credential(gateway, stack):
    assert gateway.post("/api/transactions/store", json=STORE).status_code == 401
    r = gateway.post("/api/transactions/store", json=STORE, headers={"X-Service-Token": "guess"})
    assert r.status_code == 403 and "error" in r.json()
    user, _ = register(gateway)
    r = gateway.post("/api/transactions/store", json={**STORE, "user_id": user},
                     headers={"X-Service-Token": secrets.service_token()})
    assert r.status_code == 201 and r.json()["message"] == "Transaction stored successfully"
    assert ledger_rows(stack, user) == [("SPX", "buy", 2, 250685, 501370)]


@pytest.mark.parametrize("change", [
    {"quantity": "2"}, {"quantity": 0}, {"quantity": 2.5}, {"action": "hold"}, {"price": -1},
    {"price": "2506"}, {"symbol": "SP X"}, {"symbol": None}, {"user_id": 7}, {"timestamp": "yesterday"},
    {"user_id": {"$ne": None}},
])
def test_store_refuses_malformed_records_without_writing(gateway, stack, change):
    user, _ = register(gateway)
    service = {"X-Service-Token": secrets.service_token()}
    r = gateway.post("/api/transactions/store", json={**STORE, "user_id": user, **change}, headers=service)
    assert r.status_code == 400 and r.json()["error"].startswith("Invalid input data")
    assert ledger_rows(stack, user) == []
    assert gateway.post("/api/transactions/store", data=b"{oops", headers=service).status_code == 400


def trades_in_doubt_points(gateway, since: int) -> list[int]:
    """The TradesInDoubt values RecoveryFunction wrote (Embedded Metric Format) after `since`,
    waiting up to 10 s for the first (the worker's output reaches the log on its own thread)."""
    deadline = time.monotonic() + 10
    while True:
        with open(gateway.log, "rb") as f:
            f.seek(since)
            text = f.read().decode(errors="replace")
        if '"TradesInDoubt"' in text or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    points = []
    for line in text.splitlines():
        start = line.find('{"_aws"')
        if start >= 0 and '"TradesInDoubt"' in line:
            doc = json.loads(line[start:])
            (directive,) = doc["_aws"]["CloudWatchMetrics"]
            assert directive["Metrics"] == [{"Name": "TradesInDoubt", "Unit": "Count"}]
            points.append(doc["TradesInDoubt"])
    return points


def test_recovery_publishes_how_many_trades_it_found_in_doubt(gateway, stack):
    """The TradesInDoubt alarm's metric: above 0 when a crash left a trade in doubt, 0 once
    recovery has finished it."""
    user, h = register(gateway)
    assert trade(gateway, "buy", user, h, quantity=1).status_code == 200
    set_faults(stack, "coordinator.after_decision")
    try:
        assert trade(gateway, "sell", user, h, quantity=1).status_code == 500
    finally:
        set_faults(stack)
    mark = gateway.log.stat().st_size
    assert run_recovery(gateway)["finished"]
    assert max(trades_in_doubt_points(gateway, mark)) >= 1
    mark = gateway.log.stat().st_size
    assert run_recovery(gateway)["finished"] == {}
    assert 0 in trades_in_doubt_points(gateway, mark)
