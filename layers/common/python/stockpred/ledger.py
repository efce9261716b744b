"""The ledger's side of a trade (PostgreSQL): two-phase commit, the decision log, and reads.

- prepare: the trade's row is inserted in a transaction that is `PREPARE TRANSACTION`d as
  `trade-<id>`: durable, invisible, and waiting for the decision.
- decide: the decision is a row written once per trade (`INSERT ... ON CONFLICT DO NOTHING`)
  and read back; whoever wrote first (the coordinator or recovery) decided, and everyone follows
  what was read back.
- commit / abort: `COMMIT PREPARED` / `ROLLBACK PREPARED`, each a no-op when already done.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import psycopg2
import psycopg2.errors

from stockpred import postgres
from stockpred.money import money


class LedgerError(RuntimeError):
    """The ledger cannot do this step (message says why)."""


def gid(txid: str) -> str:
    return f"trade-{uuid.UUID(txid)}"


def _autocommit() -> psycopg2.extensions.connection:
    conn = postgres.connect()
    conn.autocommit = True
    return conn


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


def decide(txid: str, wanted: str, by: str) -> str:
    """Writes `wanted` unless a decision exists; returns the decision that stands."""
    conn = _autocommit()
    try:
        with conn.cursor() as cur:
            cur.execute("""INSERT INTO trade_decisions (transaction_id, decision, decided_by)
                           VALUES (%s, %s, %s) ON CONFLICT (transaction_id) DO NOTHING""",
                        (txid, wanted, by))
            return decision(cur, txid) or wanted
    finally:
        conn.close()


def finish(txid: str, outcome: str) -> None:
    """COMMIT PREPARED or ROLLBACK PREPARED by the decision `outcome`; nothing if already done."""
    conn = _autocommit()
    try:
        with conn.cursor() as cur:
            if not _prepared(cur, txid):
                if outcome == "commit" and not _row_exists(cur, txid):
                    raise LedgerError(f"trade {txid}: nothing prepared to commit")
                return
            verb = "COMMIT PREPARED" if outcome == "commit" else "ROLLBACK PREPARED"
            try:
                cur.execute(f"{verb} %s", (gid(txid),))
            except psycopg2.errors.UndefinedObject:
                return  # finished by someone else between the check and now
    finally:
        conn.close()


def in_doubt(older_than_s: float) -> list[str]:
    """Prepared trades older than the threshold: transaction ids."""
    with postgres.transaction() as cur:
        cur.execute("""SELECT gid FROM pg_prepared_xacts WHERE gid LIKE 'trade-%%'
                       AND prepared < now() - make_interval(secs => %s)""", (older_than_s,))
        return [g.removeprefix("trade-") for (g,) in cur.fetchall()]


def store(record: dict[str, Any]) -> str:
    """A ledger row written directly (the internal /api/transactions/store)."""
    txid = str(uuid.uuid4())
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
                              realised_pnl_cents, source, traded_at
                       FROM transactions WHERE user_id = %s ORDER BY traded_at DESC LIMIT %s""",
                    (user_id, limit))
        rows = cur.fetchall()
    return [{"transaction_id": str(i), "symbol": s, "action": side, "quantity": q,
             "price": money(p), "price_cents": p, "amount_cents": a, "fee_cents": f,
             "realised_pnl_cents": r, "source": src,
             "timestamp": t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")}
            for i, s, side, q, p, a, f, r, src, t in rows]
