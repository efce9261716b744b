"""Paper accounts on FerretDB (real MongoDB wire protocol on PostgreSQL): race-free money."""

import concurrent.futures as cf
import re
import uuid

import pymongo
import pytest

from stockpred.trading.accounts import Accounts, InsufficientFunds


@pytest.fixture
def accounts(stack):
    client = pymongo.MongoClient(stack["MONGO_URL"])
    db = client[f"accounts_{uuid.uuid4().hex[:8]}"]
    db.account_entries.create_index([("account", 1), ("seq", 1)])
    yield Accounts(db, deadline_s=60)
    client.drop_database(db.name)
    client.close()


def test_fifty_concurrent_debits_against_cash_for_ten_succeed_exactly_ten_times(accounts):
    account = uuid.uuid4().hex
    accounts.open(account, cash_cents=10 * 1_000)
    with cf.ThreadPoolExecutor(50) as pool:
        futures = [pool.submit(accounts.debit, account, 1_000) for _ in range(50)]
    outcomes = [f.exception() for f in futures]
    assert sum(e is None for e in outcomes) == 10
    assert all(isinstance(e, InsufficientFunds) for e in outcomes if e is not None)
    state = accounts.state(account)
    assert state.cash_cents == 0
    # Every intermediate balance, replayed from the entries, stayed at or above zero.
    balance = 0
    for entry in accounts.db.account_entries.find({"account": account}).sort("seq", 1):
        balance += entry.get("cash_cents", 0)
        assert balance >= 0
    assert accounts.db.account_entries.count_documents({"account": account}) == 11


def test_open_twice_and_a_retried_debit_change_nothing(accounts):
    account = uuid.uuid4().hex
    accounts.open(account, cash_cents=5_000)
    accounts.open(account, cash_cents=9_999_999)
    accounts.debit(account, 1_500, ref="t-1")
    accounts.debit(account, 1_500, ref="t-1")
    assert accounts.state(account).cash_cents == 3_500


def test_insufficient_funds_says_how_much(accounts):
    account = uuid.uuid4().hex
    accounts.open(account, cash_cents=100)
    with pytest.raises(InsufficientFunds, match=re.escape("insufficient cash: 2.00 needed, 1.00 available")):
        accounts.debit(account, 200)
    assert accounts.state(account).cash_cents == 100


def test_state_from_snapshots_equals_state_from_entries(accounts):
    account = uuid.uuid4().hex
    accounts.open(account, cash_cents=100_000)
    for i in range(45):
        accounts.debit(account, 7 + i)
    with_snapshot = accounts.state(account)
    accounts.db.account_snapshots.delete_many({})
    replayed = accounts.state(account)
    assert with_snapshot.seq == replayed.seq == 45
    assert with_snapshot.cash_cents == replayed.cash_cents == 100_000 - sum(7 + i for i in range(45))
