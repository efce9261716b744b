"""Universes: named sets of symbols ranked against each other, kept in PostgreSQL (`universes`).

A universe lists its members only; their daily bars come from the market data providers as for
any symbol (import a folder of CSVs first, then `stockpred universe create NAME --from-csv DIR`).
Names are 1-40 letters, digits, `-` or `_`, starting with a letter or digit; a universe has 2 to
5,000 distinct symbols, each normalised as everywhere else (stockpred.market.symbols).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from stockpred.market.symbols import InvalidSymbol, normalise
from stockpred.stores import postgres

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")
MIN_SYMBOLS = 2
MAX_SYMBOLS = 5000


class UniverseError(ValueError):
    """A universe that cannot be stored as asked: a bad name or member list, or it exists."""


class UnknownUniverse(LookupError):
    """No universe of that name."""


def check_name(name: object) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise UniverseError("a universe name is 1-40 letters, digits, '-' or '_', starting with a "
                            "letter or digit")
    return name


def members(symbols: Iterable[object]) -> list[str]:
    """The symbols normalised, duplicates dropped (first kept), every bad one named at once."""
    seen: dict[str, None] = {}
    bad = []
    for raw in symbols:
        try:
            seen.setdefault(normalise(raw), None)
        except InvalidSymbol:
            bad.append(repr(raw))
    if bad:
        raise UniverseError(f"not symbols: {', '.join(bad[:20])}{' ...' if len(bad) > 20 else ''}")
    if not MIN_SYMBOLS <= len(seen) <= MAX_SYMBOLS:
        raise UniverseError(f"a universe has {MIN_SYMBOLS} to {MAX_SYMBOLS} distinct symbols, "
                            f"not {len(seen)}")
    return list(seen)


def symbols_in_folder(folder: Path) -> list[str]:
    """The symbols of a folder of `<SYMBOL>.csv` files (what `import-csv` loads), sorted."""
    return sorted(p.stem for p in Path(folder).glob("*.csv") if p.is_file())


def create(name: str, symbols: Iterable[object], replace: bool = False) -> dict[str, Any]:
    """Stores the universe; UniverseError if it exists and `replace` is not set."""
    name, listed = check_name(name), members(symbols)
    with postgres.transaction() as cur:
        if replace:
            cur.execute("""INSERT INTO universes (name, symbols) VALUES (%s, %s)
                           ON CONFLICT (name) DO UPDATE SET symbols = EXCLUDED.symbols,
                                                            updated_at = now()
                           RETURNING name, symbols, created_at, updated_at""", (name, listed))
        else:
            cur.execute("""INSERT INTO universes (name, symbols) VALUES (%s, %s)
                           ON CONFLICT (name) DO NOTHING
                           RETURNING name, symbols, created_at, updated_at""", (name, listed))
        row = cur.fetchone()
    if row is None:
        raise UniverseError(f"universe {name} exists: use --replace to change its members")
    return _body(row)


def all_universes() -> list[dict[str, Any]]:
    with postgres.transaction() as cur:
        cur.execute("SELECT name, symbols, created_at, updated_at FROM universes ORDER BY name")
        return [_body(r) for r in cur.fetchall()]


def containing(symbol: str) -> list[str]:
    """The names of the universes that have `symbol` as a member, sorted."""
    with postgres.transaction() as cur:
        cur.execute("SELECT name FROM universes WHERE %s = ANY(symbols) ORDER BY name", (symbol,))
        return [r[0] for r in cur.fetchall()]


def get(name: str) -> dict[str, Any]:
    with postgres.transaction() as cur:
        cur.execute("SELECT name, symbols, created_at, updated_at FROM universes WHERE name = %s",
                    (check_name(name),))
        row = cur.fetchone()
    if row is None:
        raise UnknownUniverse(name)
    return _body(row)


def _body(row: tuple) -> dict[str, Any]:
    name, symbols, created, updated = row
    return {"name": name, "symbols": list(symbols), "size": len(symbols),
            "created_at": _utc(created), "updated_at": _utc(updated)}


def _utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
