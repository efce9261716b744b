"""An Idempotency-Key outlives the state Redis: its record is in PostgreSQL (idempotency_keys),
written with the trade's intent, so a retry after Redis lost the key (a failover that lost the
write, an eviction, a flush) answers the first trade and never trades a second time.

Over HTTP through the `gateway` fixture, with the assertions an auditor would make in the
ledger, the account and PostgreSQL's rows.
"""

import concurrent.futures as cf
import hashlib
import threading
import time
import uuid

import psycopg2
import pytest

from devstack.stack_state import redis_client
from tests.e2e.test_trading import (
    SPX_CENTS,
    START,
    assert_consistent,
    ledger_rows,
    register,
    run_recovery,
    set_faults,
    trade,
)

pytestmark = pytest.mark.usefixtures("flush_cache")
KEYS = "stockpred:idempotency:*"


def pg(stack, sql, *args):
    conn = psycopg2.connect(stack["DATABASE_URL"])
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()
    finally:
        conn.close()


def key_rows(stack, user):
    return pg(stack, """SELECT key_hash, symbol, side, quantity, transaction_id::text, phase, result
                        FROM idempotency_keys WHERE user_id = %s""", user)


def intents(stack, user):
    return pg(stack, "SELECT transaction_id::text FROM trade_intents WHERE user_id = %s", user)


def forget_in_redis(stack, user=None):
    """Deletes the state Redis's idempotency keys: one user's, or every user's (as a flush would)."""
    r = redis_client(stack)
    pattern = f"stockpred:idempotency:{user}:*" if user else KEYS
    keys = list(r.scan_iter(match=pattern, count=500))
    if keys:
        r.delete(*keys)
    return len(keys)


@pytest.mark.parametrize("lost", ["the user's key", "every idempotency key"])
def test_a_retry_after_redis_lost_the_key_answers_the_first_trade(gateway, stack, lost):
    user, h = register(gateway)
    key = uuid.uuid4().hex
    first = trade(gateway, "buy", user, h, quantity=2, key=key)
    assert first.status_code == 200, first.text
    txid = first.json()["transaction_id"]
    [(key_hash, symbol, side, quantity, stored_txid, phase, result)] = key_rows(stack, user)
    assert key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert (symbol, side, quantity, stored_txid, phase) == ("SPX", "buy", 2, txid, "done")
    assert result["status"] == "committed" and result["transaction_id"] == txid
    assert forget_in_redis(stack, user if lost == "the user's key" else None) >= 1
    retry = trade(gateway, "buy", user, h, quantity=2, key=key)
    assert retry.status_code == 200, retry.text
    assert retry.json() == first.json()
    assert redis_client(stack).keys(f"stockpred:idempotency:{user}:*"), "the fast path is back"
    assert forget_in_redis(stack, user) == 1
    assert trade(gateway, "buy", user, h, quantity=2, key=key).json() == first.json()
    state, rows = assert_consistent(stack, user)
    assert len(rows) == 1 and state.holdings["SPX"].shares == 2
    assert state.cash_cents == START - 2 * SPX_CENTS
    assert intents(stack, user) == [(txid,)] and len(key_rows(stack, user)) == 1


def test_concurrent_retries_while_redis_keeps_losing_the_key_trade_once(gateway, stack):
    user, h = register(gateway)
    key = uuid.uuid4().hex
    stop = threading.Event()

    def lose_keys():  # the state Redis losing the key again and again while the requests run
        while not stop.is_set():
            forget_in_redis(stack, user)
            time.sleep(0.01)

    loser = threading.Thread(target=lose_keys)
    loser.start()
    try:
        with cf.ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(lambda _: trade(gateway, "buy", user, h, key=key), range(8)))
    finally:
        stop.set()
        loser.join()
    assert [r.status_code for r in responses] == [200] * 8, [r.text for r in responses]
    [txid] = {r.json()["transaction_id"] for r in responses}
    # Retries after every copy in Redis is gone: answered from PostgreSQL, all at once.
    forget_in_redis(stack, user)
    with cf.ThreadPoolExecutor(8) as pool:
        again = list(pool.map(lambda _: trade(gateway, "buy", user, h, key=key), range(8)))
    assert {r.status_code for r in again} == {200}
    assert {r.json()["transaction_id"] for r in again} == {txid}
    state, rows = assert_consistent(stack, user)
    assert len(rows) == 1 and state.holdings["SPX"].shares == 1
    assert intents(stack, user) == [(txid,)], "a second trade was started for the key"
    [row] = key_rows(stack, user)
    assert row[4:6] == (txid, "done")


def test_the_same_key_for_a_different_order_is_refused_with_or_without_redis(gateway, stack):
    user, h = register(gateway)
    key = uuid.uuid4().hex
    first = trade(gateway, "buy", user, h, quantity=2, key=key)
    assert first.status_code == 200, first.text
    for lose in (False, True):
        if lose:
            forget_in_redis(stack, user)
        for side, quantity, symbol in (("buy", 3, "SPX"), ("sell", 2, "SPX"), ("buy", 2, "AAPL")):
            r = trade(gateway, side, user, h, symbol=symbol, quantity=quantity, key=key)
            assert r.status_code == 422, r.text
            assert r.json()["error"] == "Idempotency-Key was already used for a different request"
    assert trade(gateway, "buy", user, h, quantity=2, key=key).json() == first.json()
    state, rows = assert_consistent(stack, user)
    assert len(rows) == 1 and state.holdings["SPX"].shares == 2
    [row] = key_rows(stack, user)
    assert row[1:6] == ("SPX", "buy", 2, first.json()["transaction_id"], "done")


@pytest.mark.slow
@pytest.mark.parametrize("point,traded", [("users.commit", True), ("users.prepare", False)])
def test_a_retry_after_a_crash_recovery_and_a_lost_redis_key_answers_the_recorded_outcome(
        gateway, stack, point, traded):
    user, h = register(gateway)
    key = uuid.uuid4().hex
    set_faults(stack, point)
    try:
        first = trade(gateway, "buy", user, h, quantity=2, key=key)
    finally:
        set_faults(stack)
    assert first.status_code == 500, first.text
    crashed = first.json()["transaction_id"]
    [row] = key_rows(stack, user)
    assert row[4:6] == (crashed, "failed")
    run_recovery(gateway)
    assert forget_in_redis(stack, user) == 1
    retry = trade(gateway, "buy", user, h, quantity=2, key=key)
    assert retry.status_code == 200, retry.text
    txid = retry.json()["transaction_id"]
    # Committed before the crash: that trade is the answer. Aborted: the order runs once afresh.
    assert (txid == crashed) is traded
    forget_in_redis(stack, user)
    assert trade(gateway, "buy", user, h, quantity=2, key=key).json() == retry.json()
    state, rows = assert_consistent(stack, user)
    assert len(rows) == 1 and state.holdings["SPX"].shares == 2
    assert ledger_rows(stack, user)[0][1:3] == ("buy", 2)
    [row] = key_rows(stack, user)
    assert row[4:6] == (txid, "done") and row[6]["status"] == "committed"
    assert sorted(intents(stack, user)) == sorted({(crashed,), (txid,)})
