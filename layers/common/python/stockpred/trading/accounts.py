"""Paper-trading accounts as append-only entries, race-free on MongoDB and FerretDB alike.

An account is the ordered list of its entries in `account_entries`, each with the `_id`
`<account>:<seq>`. To change an account a writer reads its state at the last seq, checks the
change against it (enough cash, enough shares), and inserts the entry at seq + 1. When two
writers race for the same seq, the unique `_id` lets exactly one insert; the other re-reads and
tries again. FerretDB v1 does not make conditional updates atomic, so nothing here relies on
one: the only write is an insert, and the database's unique key decides every race.

Money is integer cents, shares are whole numbers. State is derived from the entries; snapshots
in `account_snapshots` only save re-reading them (any snapshot is correct for its seq).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pymongo.errors
from pymongo.database import Database

from stockpred import config
from stockpred.stores import mongo


class AccountError(Exception):
    """The change is not possible with this account's state (message says why)."""


class InsufficientFunds(AccountError):
    pass


class InsufficientShares(AccountError):
    pass


class Contention(AccountError):
    """Could not append within the deadline because other writers kept winning."""


def starting_cash_cents() -> int:
    return config.load().starting_cash_cents


@dataclass
class Holding:
    shares: int = 0
    cost_cents: int = 0


@dataclass
class AccountState:
    account: str
    seq: int = -1
    cash_cents: int = 0
    reserved_cash_cents: int = 0
    realised_pnl_cents: int = 0
    holdings: dict[str, Holding] = field(default_factory=dict)
    reserved_shares: dict[str, int] = field(default_factory=dict)
    applied_refs: set[str] = field(default_factory=set)

    @property
    def opened(self) -> bool:
        return self.seq >= 0

    @property
    def available_cash_cents(self) -> int:
        return self.cash_cents - self.reserved_cash_cents

    def available_shares(self, symbol: str) -> int:
        return self.holdings.get(symbol, Holding()).shares - self.reserved_shares.get(symbol, 0)

    def apply(self, entry: dict[str, Any]) -> None:
        self.seq = entry["seq"]
        self.cash_cents += entry.get("cash_cents", 0)
        self.reserved_cash_cents += entry.get("reserve_cash_cents", 0)
        self.realised_pnl_cents += entry.get("realised_pnl_cents", 0)
        symbol = entry.get("symbol")
        if symbol:
            h = self.holdings.setdefault(symbol, Holding())
            h.shares += entry.get("shares", 0)
            h.cost_cents += entry.get("cost_cents", 0)
            if h.shares == 0 and h.cost_cents == 0:
                del self.holdings[symbol]
            reserved = self.reserved_shares.get(symbol, 0) + entry.get("reserve_shares", 0)
            if reserved:
                self.reserved_shares[symbol] = reserved
            else:
                self.reserved_shares.pop(symbol, None)
        if entry.get("ref"):
            self.applied_refs.add(f"{entry['kind']}:{entry['ref']}")

    def to_snapshot(self) -> dict[str, Any]:
        return {
            "_id": self.account, "seq": self.seq, "cash_cents": self.cash_cents,
            "reserved_cash_cents": self.reserved_cash_cents,
            "realised_pnl_cents": self.realised_pnl_cents,
            "holdings": {s: [h.shares, h.cost_cents] for s, h in self.holdings.items()},
            "reserved_shares": self.reserved_shares, "applied_refs": sorted(self.applied_refs),
        }

    @classmethod
    def from_snapshot(cls, doc: dict[str, Any]) -> AccountState:
        return cls(account=doc["_id"], seq=doc["seq"], cash_cents=doc["cash_cents"],
                   reserved_cash_cents=doc["reserved_cash_cents"],
                   realised_pnl_cents=doc["realised_pnl_cents"],
                   holdings={s: Holding(a, b) for s, (a, b) in doc["holdings"].items()},
                   reserved_shares=dict(doc["reserved_shares"]),
                   applied_refs=set(doc["applied_refs"]))


def entry_id(account: str, seq: int) -> str:
    return f"{account}:{seq:012d}"


class Accounts:
    SNAPSHOT_EVERY = 20

    def __init__(self, database: Database | None = None, deadline_s: float = 15.0) -> None:
        self.db = database if database is not None else mongo.db()
        self.deadline_s = deadline_s

    def state(self, account: str) -> AccountState:
        snap = self.db.account_snapshots.find_one({"_id": account})
        state = AccountState.from_snapshot(snap) if snap else AccountState(account)
        for entry in self.db.account_entries.find(
                {"account": account, "seq": {"$gt": state.seq}}).sort("seq", 1):
            if entry["seq"] != state.seq + 1:
                break
            state.apply(entry)
        return state

    def append(self, account: str, plan: Callable[[AccountState], dict[str, Any] | None]) -> AccountState:
        """Appends the entry `plan` makes from the current state; retries when another writer won.

        `plan` raises AccountError to refuse, or returns None when nothing is to be done (an
        idempotent retry found its entry already applied). Returns the state after the entry.
        """
        deadline = time.monotonic() + self.deadline_s
        delay = 0.002
        while True:
            state = self.state(account)
            entry = plan(state)
            if entry is None:
                return state
            seq = state.seq + 1
            doc = {**entry, "_id": entry_id(account, seq), "account": account, "seq": seq,
                   "at": dt.datetime.now(dt.UTC)}
            try:
                self.db.account_entries.insert_one(doc)
            except pymongo.errors.DuplicateKeyError:
                if time.monotonic() > deadline:
                    raise Contention(f"account {account} is too busy, try again") from None
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 0.1)
                continue
            state.apply(doc)
            if seq % self.SNAPSHOT_EVERY == 0:
                self._snapshot(state)
            return state

    def _snapshot(self, state: AccountState) -> None:
        with contextlib.suppress(pymongo.errors.PyMongoError):
            self.db.account_snapshots.replace_one({"_id": state.account}, state.to_snapshot(),
                                                  upsert=True)

    def open(self, account: str, cash_cents: int | None = None) -> AccountState:
        """Opens the account with its starting cash; opening twice changes nothing."""
        cash = starting_cash_cents() if cash_cents is None else cash_cents

        def plan(state: AccountState) -> dict[str, Any] | None:
            if state.opened:
                return None
            return {"kind": "open", "cash_cents": cash}

        return self.append(account, plan)

    def debit(self, account: str, cents: int, ref: str | None = None) -> AccountState:
        """Takes cash out, never below zero; InsufficientFunds otherwise."""
        if cents <= 0:
            raise ValueError("a debit is a positive number of cents")

        def plan(state: AccountState) -> dict[str, Any] | None:
            if ref and f"debit:{ref}" in state.applied_refs:
                return None
            if not state.opened:
                raise AccountError(f"account {account} is not open")
            if state.available_cash_cents < cents:
                raise InsufficientFunds(
                    f"insufficient cash: {cents / 100:.2f} needed, "
                    f"{state.available_cash_cents / 100:.2f} available")
            return {"kind": "debit", "cash_cents": -cents, "ref": ref}

        return self.append(account, plan)

    # ---- the trade saga's participant steps (idempotent by transaction id) ---------------------
    def reserve(self, account: str, txid: str, side: str, symbol: str, quantity: int,
                amount_cents: int, cost_cents: int = 0) -> AccountState:
        """Prepare: holds the cash of a buy or the shares of a sell, so nothing else spends them."""
        # Whoever calls, a reservation holds something real: a negative amount would turn the
        # commit's debit into a credit (money made from nothing).
        if side not in ("buy", "sell"):
            raise AccountError("side must be buy or sell")
        for name, value, low in (("quantity", quantity, 1), ("amount_cents", amount_cents, 1),
                                 ("cost_cents", cost_cents, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise AccountError(f"{name} must be a whole number of at least {low}")
        if side == "buy" and cost_cents:
            raise AccountError("a buy has no cost basis")

        def plan(state: AccountState) -> dict[str, Any] | None:
            if f"reserve:{txid}" in state.applied_refs:
                return None
            if f"release:{txid}" in state.applied_refs:
                raise AccountError(f"trade {txid} was already aborted")
            if not state.opened:
                raise AccountError(f"account {account} is not open")
            entry = {"kind": "reserve", "ref": txid, "side": side, "symbol": symbol,
                     "quantity": quantity, "amount_cents": amount_cents, "trade_cost_cents": cost_cents}
            if side == "buy":
                if state.available_cash_cents < amount_cents:
                    raise InsufficientFunds(
                        f"insufficient cash: {amount_cents / 100:.2f} needed, "
                        f"{state.available_cash_cents / 100:.2f} available")
                entry["reserve_cash_cents"] = amount_cents
            else:
                if state.available_shares(symbol) < quantity:
                    raise InsufficientShares(
                        f"insufficient shares of {symbol}: {quantity} to sell, "
                        f"{state.available_shares(symbol)} available")
                entry["reserve_shares"] = quantity
            return entry

        return self.append(account, plan)

    def _reservation(self, account: str, txid: str) -> dict[str, Any] | None:
        return self.db.account_entries.find_one({"account": account, "kind": "reserve", "ref": txid})

    def commit(self, account: str, txid: str) -> AccountState:
        """Applies a reservation: cash for shares (buy) or shares for cash (sell)."""

        def plan(state: AccountState) -> dict[str, Any] | None:
            if f"commit:{txid}" in state.applied_refs:
                return None
            if f"release:{txid}" in state.applied_refs:
                raise AccountError(f"trade {txid} was aborted; it cannot commit")
            r = self._reservation(account, txid)
            if r is None:
                raise AccountError(f"trade {txid} has no reservation to commit")
            entry = {"kind": "commit", "ref": txid, "symbol": r["symbol"]}
            if r["side"] == "buy":
                entry.update(reserve_cash_cents=-r["amount_cents"], cash_cents=-r["amount_cents"],
                             shares=r["quantity"], cost_cents=r["amount_cents"])
            else:
                entry.update(reserve_shares=-r["quantity"], shares=-r["quantity"],
                             cost_cents=-r["trade_cost_cents"], cash_cents=r["amount_cents"],
                             realised_pnl_cents=r["amount_cents"] - r["trade_cost_cents"])
            return entry

        return self.append(account, plan)

    def release(self, account: str, txid: str) -> AccountState:
        """Aborts: gives back what a reservation held; also bars a late prepare of the same trade."""

        def plan(state: AccountState) -> dict[str, Any] | None:
            if f"release:{txid}" in state.applied_refs:
                return None
            if f"commit:{txid}" in state.applied_refs:
                raise AccountError(f"trade {txid} was committed; it cannot abort")
            entry: dict[str, Any] = {"kind": "release", "ref": txid}
            r = self._reservation(account, txid) if f"reserve:{txid}" in state.applied_refs else None
            if r is not None:
                entry["symbol"] = r["symbol"]
                if r["side"] == "buy":
                    entry["reserve_cash_cents"] = -r["amount_cents"]
                else:
                    entry["reserve_shares"] = -r["quantity"]
            return entry

        return self.append(account, plan)
