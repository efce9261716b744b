"""Kept daily history in PostgreSQL (`price_history`), per symbol and source."""

from __future__ import annotations

from collections.abc import Iterable

import psycopg2.extras

from stockpred.market.prices import Bar, SymbolInfo
from stockpred.stores import postgres


def upsert(cur: psycopg2.extensions.cursor, info: SymbolInfo, bars: Iterable[Bar]) -> int:
    rows = [(info.symbol, info.source, b.date, b.open, b.high, b.low, b.close, b.volume)
            for b in bars]
    cur.execute(
        """INSERT INTO symbols (symbol, source, name, currency) VALUES (%s, %s, %s, %s)
           ON CONFLICT (symbol, source) DO UPDATE SET name = EXCLUDED.name,
                                                      currency = EXCLUDED.currency""",
        (info.symbol, info.source, info.name, info.currency),
    )
    psycopg2.extras.execute_values(
        cur,
        """INSERT INTO price_history (symbol, source, day, open, high, low, close, volume)
           VALUES %s
           ON CONFLICT (symbol, source, day) DO UPDATE SET
             open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low,
             close = EXCLUDED.close, volume = EXCLUDED.volume, loaded_at = now()""",
        rows,
        page_size=1000,
    )
    return len(rows)


def save(info: SymbolInfo, bars: Iterable[Bar]) -> int:
    with postgres.transaction() as cur:
        return upsert(cur, info, bars)


def load(symbol: str, source: str) -> list[Bar]:
    with postgres.transaction() as cur:
        cur.execute(
            """SELECT day, open, high, low, close, volume FROM price_history
               WHERE symbol = %s AND source = %s ORDER BY day""",
            (symbol, source),
        )
        return [Bar(d, float(o), float(h), float(lo), float(c), int(v))
                for d, o, h, lo, c, v in cur.fetchall()]


def symbols(source: str) -> list[SymbolInfo]:
    with postgres.transaction() as cur:
        cur.execute("SELECT symbol, name, currency FROM symbols WHERE source = %s ORDER BY symbol",
                    (source,))
        return [SymbolInfo(s, n, c, source) for s, n, c in cur.fetchall()]


def info(symbol: str, source: str) -> SymbolInfo | None:
    with postgres.transaction() as cur:
        cur.execute("SELECT name, currency FROM symbols WHERE symbol = %s AND source = %s",
                    (symbol, source))
        row = cur.fetchone()
    return SymbolInfo(symbol, row[0], row[1], source) if row else None
