"""The ledger and the trade saga under hostile input: idempotency keys that outlive a crash,
client timestamps and prices on the internal /store, the warehouse's high-water mark, and the
saga's step handlers invoked by hand.

HTTP through the `gateway` fixture for behaviour; the domain functions and the step handlers
(functions/trades/steps.py) in-process for the edge cases.
"""

from __future__ import annotations

import base64
import datetime as dt
import importlib.util
import json
import uuid
from pathlib import Path

import pymongo
import pytest

from devstack.stack_state import redis_client
from stockpred import config
from stockpred.analytics import etl, lake
from stockpred.cloud import secrets
from stockpred.trading import ledger, saga
from stockpred.trading.accounts import Accounts
from stockpred.trading.money import client_price_cents
from stockpred.trading.steps import InvalidStep
from tests.e2e.test_warehouse import pg

pytestmark = pytest.mark.usefixtures("flush_cache")
ROOT = Path(__file__).resolve().parents[2]
START = 10_000_000


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module", autouse=True)
def migrated(stack):
    from stockpred.stores import postgres

    postgres.connect().close()  # applies the migrations, as the first function to run would


@pytest.fixture(scope="module")
def steps(stack):
    return _load("trade_steps_under_test", ROOT / "functions/trades/steps.py")


@pytest.fixture(scope="module")
def transactions_app(stack):
    return _load("transactions_app_under_test", ROOT / "functions/transactions/app.py")


def rows_of(stack, user):
    return pg(stack, "SELECT id::text, side, quantity, price_cents, amount_cents FROM transactions "
                     "WHERE user_id = %s ORDER BY traded_at", user)


def accounts(stack):
    return Accounts(pymongo.MongoClient(stack["MONGO_URL"])["stockpred"])


def entries(stack, user):
    return accounts(stack).db.account_entries.count_documents({"account": user})


def set_faults(stack, *points):
    r = redis_client(stack)
    r.delete("stockpred:faults")
    if points:
        r.sadd("stockpred:faults", *points)


def buy(gateway, user, key=None, quantity=1):
    headers = dict(user.headers)
    if key:
        headers["Idempotency-Key"] = key
    return gateway.post("/api/users/buy", json={"user_id": user.user_id, "symbol": "SPX",
                                                "quantity": quantity}, headers=headers)


def now_iso(delta=dt.timedelta(0)):
    return (dt.datetime.now(dt.UTC) + delta).replace(microsecond=0).isoformat()


def service():
    return {"X-Service-Token": secrets.service_token()}


def store_body(user_id, **change):
    return {"user_id": user_id, "symbol": "SPX", "quantity": 2, "action": "buy", "price": 2506.85,
            "timestamp": now_iso(), **change}


# ---- 3. an Idempotency-Key outlives a crash for seconds, and a retry never answers 500 ----------
def test_a_crash_between_claiming_the_key_and_starting_does_not_poison_the_key(gateway, stack):
    user = gateway.new_user()
    key = uuid.uuid4().hex
    set_faults(stack, saga.START_POINT)
    try:
        first = buy(gateway, user, key)
    finally:
        set_faults(stack)
    assert first.status_code == 500  # the crash itself
    assert rows_of(stack, user.user_id) == []
    retry = buy(gateway, user, key)
    assert retry.status_code == 200, retry.text
    again = buy(gateway, user, key)
    assert again.status_code == 200 and again.json()["transaction_id"] == retry.json()["transaction_id"]
    assert len(rows_of(stack, user.user_id)) == 1
    assert accounts(stack).state(user.user_id).holdings["SPX"].shares == 1


class Killed(BaseException):
    """The process dies: no except clause or cleanup of the request runs."""


def test_a_claim_left_by_a_killed_request_expires_in_seconds(gateway, stack, monkeypatch):
    monkeypatch.setenv("IDEMPOTENCY_CLAIM_SECONDS", "2")
    config.load.cache_clear()
    try:
        user = gateway.new_user()
        key = uuid.uuid4().hex
        real_check = saga.faults.check

        def die(point):
            if point == saga.START_POINT:
                raise Killed()
            real_check(point)

        monkeypatch.setattr(saga.faults, "check", die)
        with pytest.raises(Killed):
            saga.execute(user.user_id, "SPX", "buy", 1, key)
        monkeypatch.setattr(saga.faults, "check", real_check)
        state = redis_client(stack)
        [claim] = state.keys(f"stockpred:idempotency:{user.user_id}:*")
        assert 0 < state.pttl(claim) <= 2000, "a claim must not outlive a dead request for long"
        result = saga.execute(user.user_id, "SPX", "buy", 1, key)
        assert result.status == "committed", result
        assert state.ttl(claim) > 3600  # the answer is kept for repeats
        assert saga.execute(user.user_id, "SPX", "buy", 1, key).transaction_id == result.transaction_id
        assert len(rows_of(stack, user.user_id)) == 1
    finally:
        config.load.cache_clear()


def test_a_retry_after_a_failed_trade_runs_it_again_instead_of_repeating_500(gateway, stack):
    user = gateway.new_user()
    key = uuid.uuid4().hex
    set_faults(stack, "users.prepare")
    try:
        first = buy(gateway, user, key)
    finally:
        set_faults(stack)
    assert first.status_code == 500
    retry = buy(gateway, user, key)
    assert retry.status_code == 200, retry.text
    assert retry.json()["transaction_id"] != first.json()["transaction_id"]
    assert buy(gateway, user, key).json()["transaction_id"] == retry.json()["transaction_id"]
    state = accounts(stack).state(user.user_id)
    assert len(rows_of(stack, user.user_id)) == 1 and state.holdings["SPX"].shares == 1
    assert state.reserved_cash_cents == 0


@pytest.mark.slow
def test_a_retry_after_a_trade_that_failed_after_committing_answers_it_without_trading_twice(
        gateway, stack):
    user = gateway.new_user()
    key = uuid.uuid4().hex
    set_faults(stack, "users.commit")
    try:
        first = buy(gateway, user, key, quantity=2)
    finally:
        set_faults(stack)
    assert first.status_code == 500
    retry = buy(gateway, user, key, quantity=2)
    assert retry.status_code == 200, retry.text
    assert retry.json()["transaction_id"] == first.json()["transaction_id"]
    state = accounts(stack).state(user.user_id)
    assert len(rows_of(stack, user.user_id)) == 1 and state.holdings["SPX"].shares == 2
    assert state.reserved_cash_cents == 0 and state.cash_cents == START - 2 * 250_685


# ---- 4 and 5. client timestamps within a window; the listing survives any stored time ----------
@pytest.mark.parametrize("timestamp", [
    "9999-12-31T23:00:00-05:00",          # year 10000 in UTC
    "9999-12-31T23:59:59.999999Z",
    "0001-01-01T00:00:00+14:00",          # year 0 in UTC
    "0001-01-01T00:00:00Z",
    "2018-12-31T21:00:00Z",               # years back: it would hide below the warehouse's mark
    "__25h_ago__",
    "__10min_ahead__",
    "2026-01-01T00:00:00+23:59",          # no place has this offset
    "2026-01-01T00:00:00+24:00",
    "2026-13-01T00:00:00Z",
    1_700_000_000,
    None,
    "",
    "x" * 100,
])
def test_store_refuses_timestamps_outside_the_window(gateway, stack, timestamp):
    user = gateway.new_user()
    if timestamp == "__25h_ago__":
        timestamp = now_iso(-dt.timedelta(hours=25))
    elif timestamp == "__10min_ahead__":
        timestamp = now_iso(dt.timedelta(minutes=10))
    r = gateway.post("/api/transactions/store", json=store_body(user.user_id, timestamp=timestamp),
                     headers=service())
    assert r.status_code == 400, r.text
    assert "timestamp" in r.json()["error"]
    assert rows_of(stack, user.user_id) == []
    assert gateway.get("/api/transactions", headers=user.headers).status_code == 200


@pytest.mark.parametrize("offset", ["+05:45", "-03:30", "+14:00", "-12:00", "+00:00", "Z"])
def test_store_accepts_odd_offsets_within_the_window_and_lists_them_in_utc(gateway, stack, offset):
    user = gateway.new_user()
    when = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=2)
    tz = dt.UTC if offset == "Z" else dt.datetime.strptime(offset, "%z").tzinfo
    text = when.astimezone(tz).isoformat().replace("+00:00", "Z" if offset == "Z" else "+00:00")
    r = gateway.post("/api/transactions/store", json=store_body(user.user_id, timestamp=text),
                     headers=service())
    assert r.status_code == 201, r.text
    listed = gateway.get("/api/transactions", headers=user.headers)
    assert listed.status_code == 200
    assert listed.json()["transactions"][0]["timestamp"] == when.isoformat().replace("+00:00", "Z")


def test_the_listing_survives_rows_stored_before_the_window_existed(gateway, stack):
    user = gateway.new_user()
    for when in ("9999-12-31T23:00:00-05:00", "0001-01-01T00:00:00+14:00"):
        pg(stack, """INSERT INTO transactions (id, user_id, symbol, side, quantity, price_cents,
                      amount_cents, source, traded_at)
                      VALUES (%s, %s, 'SPX', 'buy', 1, 100, 100, 'api', %s)""",
           str(uuid.uuid4()), user.user_id, when)
    try:
        r = gateway.get("/api/transactions", headers=user.headers)
        assert r.status_code == 200, r.text
        listed = r.json()["transactions"]
        assert len(listed) == 2 and listed[0]["timestamp"].startswith("10000-")
    finally:
        pg(stack, "DELETE FROM transactions WHERE user_id = %s", user.user_id)


def test_parse_timestamp_edges():
    now = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
    assert ledger.parse_timestamp("2026-11-24T06:45:00-05:15", now) == dt.datetime(
        2026, 11, 24, 12, 0, tzinfo=dt.UTC)
    assert ledger.parse_timestamp("2026-11-23T12:00:00Z", now) == now - dt.timedelta(hours=24)
    assert ledger.parse_timestamp("2026-11-24T12:05:00", now) == now + dt.timedelta(minutes=5)
    for bad in ("2026-11-23T11:59:59Z", "2026-11-24T12:05:01Z", "9999-12-31T23:00:00-05:00",
                "0001-01-01T00:00:00+14:00", "0001-01-01", "9999-12-31", "2026-11-24T12:00:00+20:00",
                12, 1.5, True, None, [], {}):
        with pytest.raises(ValueError):
            ledger.parse_timestamp(bad, now)


# ---- 11. prices that round to 0 cents, non-finite numbers, booleans and strings: 400 ----------
@pytest.mark.parametrize("price", [0.001, 1e-9, 0.004999, 0.005, 5e-324, 0, -0.01, True, False, "2506.85",
                                   None, [1], {"$gt": 0}, 1e9, 1e308, 10**400])
def test_store_refuses_prices_that_are_not_a_cent_or_more(gateway, stack, price):
    user = gateway.new_user()
    r = gateway.post("/api/transactions/store", json=store_body(user.user_id, price=price),
                     headers=service())
    assert r.status_code == 400, r.text
    assert rows_of(stack, user.user_id) == []


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
def test_store_refuses_non_finite_prices(gateway, stack, literal):
    user = gateway.new_user()
    body = json.dumps(store_body(user.user_id, price="@")).encode().replace(b'"@"', literal)
    r = gateway.post("/api/transactions/store", data=body, headers={**service(),
                                                                     "Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert rows_of(stack, user.user_id) == []


def test_the_smallest_price_is_one_cent(gateway, stack):
    user = gateway.new_user()
    r = gateway.post("/api/transactions/store", json=store_body(user.user_id, price=0.006),
                     headers=service())
    assert r.status_code == 201, r.text
    assert rows_of(stack, user.user_id)[0][3:] == (1, 2)
    for bad in (float("nan"), float("inf"), -float("inf"), 0.0049, True):
        with pytest.raises(ValueError):
            client_price_cents(bad)


# ---- 4. a back-dated row (within the window) cannot wedge the warehouse -------------------------
def test_a_back_dated_row_does_not_stop_the_warehouse(gateway, stack):
    etl.run()  # the high-water mark is now about now
    user = gateway.new_user()
    r = gateway.post("/api/transactions/store",
                     json=store_body(user.user_id, timestamp=now_iso(-dt.timedelta(hours=23))),
                     headers=service())
    assert r.status_code == 201, r.text
    first = etl.run()
    assert first["loaded"]["fact_trades"] == 1
    assert buy(gateway, user).status_code == 200
    second = etl.run()
    assert second["loaded"]["fact_trades"] == 1
    assert etl.run()["loaded"]["fact_trades"] == 0
    total = pg(stack, "SELECT count(*) FROM transactions")[0][0]
    assert second["totals"]["trades"] == total
    assert r.json()["transaction_id"] in set(lake.table("fact_trades").to_pandas()["trade_id"])


# ---- 10. /store trusts an IAM identity only where API Gateway verified it -----------------------
def _event(body, identity):
    return {
        "resource": "/api/transactions/store", "path": "/api/transactions/store", "httpMethod": "POST",
        "headers": {"Content-Type": "application/json"}, "multiValueHeaders": {},
        "queryStringParameters": None, "multiValueQueryStringParameters": None,
        "pathParameters": None, "stageVariables": None, "isBase64Encoded": True,
        "body": base64.b64encode(json.dumps(body).encode()).decode(),
        "requestContext": {"resourcePath": "/api/transactions/store", "httpMethod": "POST",
                           "path": "/api/transactions/store", "stage": "api", "requestId": "forged",
                           "identity": identity, "accountId": "123456789012", "apiId": "forged"},
    }


def test_a_hand_made_iam_identity_does_not_write_the_ledger(gateway, stack, transactions_app):
    user = gateway.new_user()
    forged = {"userArn": "arn:aws:iam::123456789012:user/anyone", "sourceIp": "127.0.0.1",
              "accessKey": "AKIAFORGED", "caller": "AIDAFORGED"}
    out = transactions_app.app(_event(store_body(user.user_id), forged), None)
    assert out["statusCode"] == 401, out
    assert rows_of(stack, user.user_id) == []


def test_iam_identity_is_trusted_only_outside_local_mode_for_the_expected_roles(transactions_app):
    allowed = transactions_app.iam_caller_allowed
    role = "arn:aws:iam::123456789012:role/stockpred-Users-ABC"
    session = "arn:aws:sts::123456789012:assumed-role/stockpred-Users-ABC/users-fn"
    aws = config.Settings(env="aws", service_role_arns=(role,))
    assert allowed({"identity": {"userArn": session}}, aws)
    assert allowed({"identity": {"userArn": role}}, aws)
    for arn in ("arn:aws:sts::123456789012:assumed-role/SomethingElse/users-fn",
                "arn:aws:sts::999999999999:assumed-role/stockpred-Users-ABC/users-fn",
                "arn:aws:iam::123456789012:user/stockpred-Users-ABC", "", None, 7):
        assert not allowed({"identity": {"userArn": arn}}, aws), arn
    assert not allowed({"identity": {"userArn": session}}, config.Settings(service_role_arns=(role,)))
    assert not allowed({"identity": {"userArn": session}}, config.Settings(env="aws"))
    assert not allowed({"identity": "nonsense"}, aws) and not allowed(None, aws)


# ---- 10. the saga's step handlers validate their input as if anyone could call them -----------
def _intent(stack, user_id, side="buy", quantity=1, price_cents=250_685, cost_cents=0):
    txid = str(uuid.uuid4())
    saga._record_intent(txid, user_id, "SPX", side, quantity)
    pg(stack, "UPDATE trade_intents SET price_cents = %s, cost_cents = %s, as_of = '2018-12-31' "
              "WHERE transaction_id = %s", price_cents, cost_cents, txid)
    trade = {"transaction_id": txid, "user_id": user_id, "symbol": "SPX", "side": side,
             "quantity": quantity}
    quote = {"price_cents": price_cents, "amount_cents": price_cents * quantity, "as_of": "2018-12-31",
             "cost_cents": cost_cents}
    return trade, quote


@pytest.fixture
def intents(stack):
    """Finishes, as recovery would, the trades a test recorded by hand."""
    made = []
    yield made
    for txid, user_id in made:
        saga.finish_in_doubt(txid, user_id)


def _nothing_moved(stack, user_id, n_entries):
    state = accounts(stack).state(user_id)
    assert state.cash_cents == START and state.reserved_cash_cents == 0 and not state.holdings
    assert entries(stack, user_id) == n_entries
    assert rows_of(stack, user_id) == []


def test_a_negative_amount_then_commit_mints_nothing(gateway, stack, steps, intents):
    user = gateway.new_user()
    n = entries(stack, user.user_id)
    minted = -100_000_000
    known, _ = _intent(stack, user.user_id)
    intents.append((known["transaction_id"], user.user_id))
    for trade, _ in ((known, None),
                     ({"transaction_id": str(uuid.uuid4()), "user_id": user.user_id, "symbol": "SPX",
                       "side": "buy", "quantity": 1}, None)):
        evil = {"price_cents": minted, "amount_cents": minted, "as_of": "x", "cost_cents": 0}
        for handler in (steps.account, steps.ledger):
            with pytest.raises(InvalidStep):
                handler({"step": "prepare", "trade": trade, "quote": evil}, None)
        with pytest.raises(InvalidStep):
            steps.decide({"transaction_id": trade["transaction_id"], "decision": "commit"}, None)
        for handler in (steps.account, steps.ledger):
            with pytest.raises(InvalidStep):
                handler({"step": "commit", "trade": trade}, None)
    _nothing_moved(stack, user.user_id, n)
    # and the domain itself refuses, whoever calls it
    with pytest.raises(Exception, match="amount_cents"):
        accounts(stack).reserve(user.user_id, str(uuid.uuid4()), "buy", "SPX", 1, minted)
    with pytest.raises(ledger.LedgerError):
        ledger.prepare(str(uuid.uuid4()), user.user_id, "SPX", "buy", 1, -5)
    _nothing_moved(stack, user.user_id, n)


def test_unknown_transactions_and_mismatched_orders_are_refused(gateway, stack, steps, intents):
    user = gateway.new_user()
    other = gateway.new_user()
    n = entries(stack, user.user_id)
    trade, quote = _intent(stack, user.user_id, quantity=2)
    intents.append((trade["transaction_id"], user.user_id))
    unknown = {**trade, "transaction_id": str(uuid.uuid4())}
    mismatched = [
        unknown,
        {**trade, "quantity": 1},                     # a cheaper order than the one recorded
        {**trade, "side": "sell"},
        {**trade, "symbol": "IXIC"},
        {**trade, "user_id": other.user_id},          # someone else's account
        {**trade, "transaction_id": trade["transaction_id"].upper()},
        {**trade, "quantity": True},
        {**trade, "quantity": -2},
        {**trade, "extra": 1},
        {k: v for k, v in trade.items() if k != "side"},
        "not a trade", None,
    ]
    for bad in mismatched:
        for handler in (steps.account, steps.ledger):
            with pytest.raises(InvalidStep):
                handler({"step": "prepare", "trade": bad, "quote": quote}, None)
        with pytest.raises(InvalidStep):
            steps.quote(bad, None)
    for bad_quote in ({**quote, "price_cents": 1, "amount_cents": 2},   # not the stored quote
                      {**quote, "amount_cents": quote["amount_cents"] - 1},
                      {**quote, "price_cents": float(quote["price_cents"])},
                      {**quote, "cost_cents": -1}, None, []):
        for handler in (steps.account, steps.ledger):
            with pytest.raises(InvalidStep):
                handler({"step": "prepare", "trade": trade, "quote": bad_quote}, None)
    for event in (None, [], "x", {"step": "prepare", "trade": trade},           # no quote
                  {"step": "commit", "trade": trade, "quote": quote},            # quote off-phase
                  {"step": "reserve", "trade": trade}, {"step": ["prepare"], "trade": trade}):
        for handler in (steps.account, steps.ledger):
            with pytest.raises(InvalidStep):
                handler(event, None)
    for event in ({"transaction_id": unknown["transaction_id"], "decision": "abort"},
                  {"transaction_id": trade["transaction_id"], "decision": "maybe"},
                  {"transaction_id": trade["transaction_id"]}, {"transaction_id": 7, "decision": "abort"},
                  {"transaction_id": trade["transaction_id"], "decision": "commit", "by": "me"}):
        with pytest.raises(InvalidStep):
            steps.decide(event, None)
    _nothing_moved(stack, user.user_id, n)
    assert entries(stack, other.user_id) == 1


def test_phases_only_in_order(gateway, stack, steps, intents):
    user = gateway.new_user()
    n = entries(stack, user.user_id)
    trade, quote = _intent(stack, user.user_id)
    intents.append((trade["transaction_id"], user.user_id))
    # commit or abort before any decision
    for step in ("commit", "abort"):
        for handler in (steps.account, steps.ledger):
            with pytest.raises(InvalidStep):
                handler({"step": step, "trade": trade}, None)
    # a commit decision needs both participants prepared
    with pytest.raises(InvalidStep):
        steps.decide({"transaction_id": trade["transaction_id"], "decision": "commit"}, None)
    steps.ledger({"step": "prepare", "trade": trade, "quote": quote}, None)
    with pytest.raises(InvalidStep):
        steps.decide({"transaction_id": trade["transaction_id"], "decision": "commit"}, None)
    # aborted: no prepare, no commit afterwards
    assert steps.decide({"transaction_id": trade["transaction_id"], "decision": "abort"}, None) == {
        "decision": "abort"}
    with pytest.raises(InvalidStep):
        steps.account({"step": "prepare", "trade": trade, "quote": quote}, None)
    for handler in (steps.account, steps.ledger):
        with pytest.raises(InvalidStep):
            handler({"step": "commit", "trade": trade}, None)
        handler({"step": "abort", "trade": trade}, None)
    assert steps.decide({"transaction_id": trade["transaction_id"], "decision": "commit"}, None) == {
        "decision": "abort"}
    state = accounts(stack).state(user.user_id)
    assert state.cash_cents == START and state.reserved_cash_cents == 0 and not state.holdings
    assert rows_of(stack, user.user_id) == []
    assert entries(stack, user.user_id) == n + 1  # the release that bars a late prepare


def test_replaying_a_committed_trades_phases_moves_no_money(gateway, stack, steps):
    user = gateway.new_user()
    r = buy(gateway, user, quantity=2)
    assert r.status_code == 200, r.text
    txid = r.json()["transaction_id"]
    trade = {"transaction_id": txid, "user_id": user.user_id, "symbol": "SPX", "side": "buy",
             "quantity": 2}
    quote = steps.quote(trade, None)  # the stored quote, not a new one
    assert quote["price_cents"] == rows_of(stack, user.user_id)[0][3]
    before = accounts(stack).state(user.user_id)
    n = entries(stack, user.user_id)
    for handler in (steps.account, steps.ledger):
        with pytest.raises(InvalidStep):
            handler({"step": "abort", "trade": trade}, None)
        handler({"step": "commit", "trade": trade}, None)     # repeated: a no-op
        handler({"step": "prepare", "trade": trade, "quote": quote}, None)  # repeated: a no-op
    assert steps.decide({"transaction_id": txid, "decision": "abort"}, None) == {"decision": "commit"}
    after = accounts(stack).state(user.user_id)
    assert after.cash_cents == before.cash_cents == START - 2 * quote["price_cents"]
    assert after.holdings["SPX"].shares == 2 and after.reserved_cash_cents == 0
    assert entries(stack, user.user_id) == n and len(rows_of(stack, user.user_id)) == 1


# ---- 6. a prepare still running when the trade is aborted leaves nothing prepared --------------
def _prepared(stack, txid):
    return pg(stack, "SELECT count(*) FROM pg_prepared_xacts WHERE gid = %s", ledger.gid(txid))[0][0]


def test_a_prepare_overtaken_by_the_abort_rolls_itself_back(gateway, stack, monkeypatch):
    """The account refuses, the Parallel state fails, and the trade is decided and finished as
    aborted while the ledger's prepare, already past its own check of the decision, still runs:
    the abort's finish found nothing to roll back, so the prepare must."""
    user = gateway.new_user()
    txid = str(uuid.uuid4())
    check_row = ledger._check_row

    def abort_arrives(*args):
        check_row(*args)
        assert ledger.decide(txid, "abort", "coordinator") == "abort"
        ledger.finish(txid, "abort")  # nothing prepared yet: it does nothing

    monkeypatch.setattr(ledger, "_check_row", abort_arrives)
    with pytest.raises(ledger.LedgerError, match="aborted while it was being prepared"):
        ledger.prepare(txid, user.user_id, "SPX", "buy", 1, 250_685)
    assert _prepared(stack, txid) == 0, "an aborted trade stayed prepared until recovery"
    assert pg(stack, "SELECT count(*) FROM transactions WHERE id = %s", txid)[0][0] == 0


def test_a_prepare_not_overtaken_stays_prepared_for_the_decision(gateway, stack):
    user = gateway.new_user()
    txid = str(uuid.uuid4())
    ledger.prepare(txid, user.user_id, "SPX", "buy", 1, 250_685)
    try:
        assert _prepared(stack, txid) == 1
    finally:
        ledger.decide(txid, "abort", "coordinator")
        ledger.finish(txid, "abort")
    assert _prepared(stack, txid) == 0
