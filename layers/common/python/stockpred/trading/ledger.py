"""The ledger's side of a trade (PostgreSQL): two-phase commit, the decision log, and reads.

- prepare: the trade's row is inserted in a transaction that is `PREPARE TRANSACTION`d as
  `trade-<id>`: durable, invisible, and waiting for the decision.
- decide: the decision is a row written once per trade (`INSERT ... ON CONFLICT DO NOTHING`)
  and read back; whoever wrote first (the coordinator or recovery) decided, and everyone follows
  what was read back.
- commit / abort: `COMMIT PREPARED` / `ROLLBACK PREPARED`, each a no-op when already done.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg2
import psycopg2.errors

from stockpred.stores import postgres
from stockpred.trading.money import money

# How far a client's timestamp (the internal /store) may be from the server's clock. A day back
# covers a caller replaying yesterday's queue; five minutes ahead covers clock skew. Anything else
# is refused: it could not be a real trade, and far values break readers (year 10000 cannot be a
# Python datetime) or hide from the warehouse's incremental load.
MAX_BACKDATE = dt.timedelta(hours=24)
MAX_FUTURE = dt.timedelta(minutes=5)
MAX_QUANTITY = 1_000_000
MAX_PRICE_CENTS = 10**11


class LedgerError(RuntimeError):
    """The ledger cannot do this step (message says why)."""


def parse_timestamp(value: object, now: dt.datetime | None = None) -> dt.datetime:
    """A client's ISO 8601 date-time as UTC, within [now - MAX_BACKDATE, now + MAX_FUTURE];
    ValueError (message says why) otherwise. A value without an offset is UTC."""
    if not isinstance(value, str) or not 1 <= len(value) <= 64:
        raise ValueError("an ISO 8601 date-time string")
    try:
        ts = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError("an ISO 8601 date-time") from None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=dt.UTC)
    offset = ts.utcoffset()
    if offset is None or abs(offset) > dt.timedelta(hours=14):
        raise ValueError("an ISO 8601 date-time with a UTC offset between -14:00 and +14:00")
    try:
        ts = ts.astimezone(dt.UTC)
    except (OverflowError, ValueError):  # year 0 or 10000 once in UTC
        raise ValueError("a date-time within the last 24 hours") from None
    if not in_window(ts, now):
        raise ValueError("a date-time within the last 24 hours (and at most 5 minutes ahead)")
    return ts


def in_window(ts: dt.datetime, now: dt.datetime | None = None) -> bool:
    """Whether an aware time is within [now - MAX_BACKDATE, now + MAX_FUTURE]."""
    now = now or dt.datetime.now(dt.UTC)
    return now - MAX_BACKDATE <= ts <= now + MAX_FUTURE


def _check_row(txid: str, user_id: object, symbol: object, side: object, quantity: object,
               price_cents: object) -> None:
    """What every ledger row must be, whoever asks (defence in depth under the callers' checks)."""
    uuid.UUID(str(txid))
    if not isinstance(user_id, str) or not 1 <= len(user_id) <= 64:
        raise LedgerError("user_id must be a string of 1 to 64 characters")
    if not isinstance(symbol, str) or not 1 <= len(symbol) <= 32:
        raise LedgerError("symbol must be a short string")
    if side not in ("buy", "sell"):
        raise LedgerError("side must be buy or sell")
    for name, value, top in (("quantity", quantity, MAX_QUANTITY), ("price_cents", price_cents,
                                                                     MAX_PRICE_CENTS)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
            raise LedgerError(f"{name} must be a whole number from 1 to {top}")


def gid(txid: str) -> str:
    return f"trade-{uuid.UUID(txid)}"


def _autocommit() -> psycopg2.extensions.connection:
    """A connection of its own, for a prepared transaction (which ends with the connection)."""
    conn = postgres.connect()
    conn.autocommit = True
    return conn


@contextlib.contextmanager
def _warm_autocommit() -> Iterator[psycopg2.extensions.cursor]:
    """A cursor on this thread's warm connection with each statement its own transaction (COMMIT
    PREPARED may not run inside one): no new PostgreSQL session per saga step."""
    conn = postgres.connection()
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            yield cur
    except (psycopg2.OperationalError, psycopg2.InterfaceError):
        conn.close()
        raise
    finally:
        if not conn.closed:
            conn.autocommit = False


def _prepared(cur: psycopg2.extensions.cursor, txid: str) -> bool:
    cur.execute("SELECT 1 FROM pg_prepared_xacts WHERE gid = %s", (gid(txid),))
    return cur.fetchone() is not None


def _row_exists(cur: psycopg2.extensions.cursor, txid: str) -> bool:
    cur.execute("SELECT 1 FROM transactions WHERE id = %s", (txid,))
    return cur.fetchone() is not None


def decision(cur: psycopg2.extensions.cursor, txid: str) -> str | None:
    cur.execute("SELECT decision FROM trade_decisions WHERE transaction_id = %s", (txid,))
    row = cur.fetchone()
    return row[0] if row else None


def prepare(txid: str, user_id: str, symbol: str, side: str, quantity: int, price_cents: int,
            cost_cents: int = 0) -> None:
    conn = _autocommit()
    try:
        with conn.cursor() as cur:
            if _prepared(cur, txid) or _row_exists(cur, txid):
                return
            if decision(cur, txid) == "abort":
                raise LedgerError(f"trade {txid} was already aborted")
        _check_row(txid, user_id, symbol, side, quantity, price_cents)
        if isinstance(cost_cents, bool) or not isinstance(cost_cents, int) or cost_cents < 0:
            raise LedgerError("cost_cents must be a whole number of at least 0")
        conn.autocommit = False
        conn.tpc_begin(gid(txid))
        amount = price_cents * quantity
        with conn.cursor() as cur:
            cur.execute(
                """INSERT INTO transactions (id, user_id, symbol, side, quantity, price_cents,
                       amount_cents, fee_cents, realised_pnl_cents, source)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, 0, %s, 'saga')""",
                (txid, user_id, symbol, side, quantity, price_cents, amount,
                 amount - cost_cents if side == "sell" else None))
        conn.tpc_prepare()
    finally:
        conn.close()
    # The other participant's refusal fails the Parallel state and the trade is aborted at once,
    # while this prepare (an invocation already under way) may still be running: the abort's
    # `finish` then found nothing to roll back. Whoever sees both the prepared transaction and the
    # abort rolls it back, so no aborted trade stays prepared until recovery.
    with _warm_autocommit() as cur:
        aborted = decision(cur, txid) == "abort"
    if aborted:
        finish(txid, "abort")
        raise LedgerError(f"trade {txid} was aborted while it was being prepared")


def decide(txid: str, wanted: str, by: str) -> str:
    """Writes `wanted` unless a decision exists; returns the decision that stands."""
    with _warm_autocommit() as cur:
        cur.execute("""INSERT INTO trade_decisions (transaction_id, decision, decided_by)
                       VALUES (%s, %s, %s) ON CONFLICT (transaction_id) DO NOTHING""",
                    (txid, wanted, by))
        return decision(cur, txid) or wanted


def finish(txid: str, outcome: str) -> None:
    """COMMIT PREPARED or ROLLBACK PREPARED by the decision `outcome`; nothing if already done."""
    with _warm_autocommit() as cur:
        if not _prepared(cur, txid):
            if outcome == "commit" and not _row_exists(cur, txid):
                raise LedgerError(f"trade {txid}: nothing prepared to commit")
            return
        verb = "COMMIT PREPARED" if outcome == "commit" else "ROLLBACK PREPARED"
        try:
            cur.execute(f"{verb} %s", (gid(txid),))
        except psycopg2.errors.UndefinedObject:
            return  # finished by someone else between the check and now
        if outcome == "commit":
            # Visible from now on: the warehouse's incremental load goes by recorded_at, so a
            # trade left in doubt for long is still read after it commits.
            cur.execute("UPDATE transactions SET recorded_at = now() WHERE id = %s", (txid,))


def in_doubt(older_than_s: float) -> list[str]:
    """Prepared trades older than the threshold: transaction ids."""
    with postgres.transaction() as cur:
        cur.execute("""SELECT gid FROM pg_prepared_xacts WHERE gid LIKE 'trade-%%'
                       AND prepared < now() - make_interval(secs => %s)""", (older_than_s,))
        return [g.removeprefix("trade-") for (g,) in cur.fetchall()]


def store(record: dict[str, Any]) -> str:
    """A ledger row written directly (the internal /api/transactions/store).

    `record["timestamp"]` must be an aware datetime within the window parse_timestamp allows;
    `recorded_at` is the server's clock, whatever the client said."""
    txid = str(uuid.uuid4())
    _check_row(txid, record["user_id"], record["symbol"], record["action"], record["quantity"],
               record["price_cents"])
    timestamp = record["timestamp"]
    if not isinstance(timestamp, dt.datetime) or timestamp.tzinfo is None:
        raise LedgerError("timestamp must be an aware date-time")
    if not in_window(timestamp):
        raise LedgerError("timestamp is outside the accepted window")
    with postgres.transaction() as cur:
        cur.execute(
            """INSERT INTO transactions (id, user_id, symbol, side, quantity, price_cents,
                   amount_cents, source, traded_at)
               VALUES (%s, %s, %s, %s, %s, %s, %s, 'api', %s)""",
            (txid, record["user_id"], record["symbol"], record["action"], record["quantity"],
             record["price_cents"], record["price_cents"] * record["quantity"], record["timestamp"]))
    return txid


def for_user(user_id: str, limit: int = 100) -> list[dict[str, Any]]:
    with postgres.transaction() as cur:
        cur.execute("""SELECT id, symbol, side, quantity, price_cents, amount_cents, fee_cents,
                              realised_pnl_cents, source,
                              to_char(traded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US')
                       FROM transactions WHERE user_id = %s ORDER BY traded_at DESC LIMIT %s""",
                    (user_id, limit))
        rows = cur.fetchall()
    # The time is formatted by PostgreSQL: a row from before the window existed (year 10000,
    # year 0) is shown as it is instead of failing the whole listing in Python's datetime.
    return [{"transaction_id": str(i), "symbol": s, "action": side, "quantity": q,
             "price": money(p), "price_cents": p, "amount_cents": a, "fee_cents": f,
             "realised_pnl_cents": r, "source": src, "timestamp": _utc_text(t)}
            for i, s, side, q, p, a, f, r, src, t in rows]


def _utc_text(text: str) -> str:
    try:
        return dt.datetime.fromisoformat(text).isoformat() + "Z"
    except ValueError:
        return text + "Z"


def prepared_or_written(txid: str) -> bool:
    """Whether the ledger holds the trade: prepared and waiting, or already committed."""
    with postgres.transaction() as cur:
        return _prepared(cur, txid) or _row_exists(cur, txid)
