"""The `csv` provider: daily OHLCV imported from a folder of CSV files into PostgreSQL.

Files are `<SYMBOL>.csv` with a `Date,Open,High,Low,Close,Volume` header (extra columns such as
`Adj Close` are ignored; dates as YYYY-MM-DD or M/D/YYYY). An import checks every row of every
file first and writes nothing unless all of them are good, so a folder is never half-imported.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from dataclasses import dataclass, field
from pathlib import Path

from stockpred import postgres, price_store, symbols
from stockpred.cache import ReadThroughCache
from stockpred.cache import key as cache_key
from stockpred.prices import Bar, Quote, SymbolInfo, quote_from_bars
from stockpred.redis_stores import cache_ring

REQUIRED = ("Date", "Open", "High", "Low", "Close", "Volume")
SOURCE = "csv"


@dataclass
class ImportReport:
    files: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def _parse_date(text: str) -> dt.date:
    text = text.strip()
    if "/" in text:
        month, day, year = (int(x) for x in text.split("/"))
        return dt.date(year, month, day)
    return dt.date.fromisoformat(text)


def _number(text: str, column: str) -> float:
    value = float(text.replace(",", "").strip())
    if not math.isfinite(value):
        raise ValueError(f"{column} is not a finite number")
    return value


def parse_file(path: Path) -> tuple[list[Bar], list[str]]:
    """The bars of one file and, separately, every problem found, each with its line number."""
    errors: list[str] = []
    bars: list[Bar] = []
    seen: dict[dt.date, int] = {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in reader.fieldnames or []]
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            return [], [f"{path.name}:1: missing column(s) {', '.join(missing)}"]
        reader.fieldnames = header
        for row in reader:
            line = reader.line_num
            try:
                if None in row or any(row.get(c) is None for c in REQUIRED):
                    raise ValueError("wrong number of fields")
                day = _parse_date(row["Date"])
                o, h, lo, c = (_number(row[k], k) for k in ("Open", "High", "Low", "Close"))
                volume = _number(row["Volume"], "Volume")
                if min(o, h, lo, c) <= 0:
                    raise ValueError("prices must be positive")
                if volume < 0 or volume != int(volume):
                    raise ValueError("Volume must be a whole number >= 0")
                if h < max(o, c, lo) or lo > min(o, c):
                    raise ValueError("High/Low do not bound Open/Close")
                if day in seen:
                    raise ValueError(f"date {day} already on line {seen[day]}")
                seen[day] = line
                bars.append(Bar(day, o, h, lo, c, int(volume)))
            except ValueError as exc:
                errors.append(f"{path.name}:{line}: {exc}")
    if not bars and not errors:
        errors.append(f"{path.name}: no data rows")
    bars.sort(key=lambda b: b.date)
    return bars, errors


def import_folder(folder: Path, currency: str = "USD") -> ImportReport:
    """Validates every `*.csv` in the folder, then loads all of them in one transaction or none."""
    report = ImportReport()
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() == ".csv")
    if not files:
        report.errors.append(f"{folder}: no .csv files")
        return report
    parsed: list[tuple[SymbolInfo, list[Bar]]] = []
    for path in files:
        try:
            symbol = symbols.normalise(path.stem)
        except symbols.InvalidSymbol as exc:
            report.errors.append(f"{path.name}: file name is not a symbol ({exc})")
            continue
        bars, errors = parse_file(path)
        report.errors += errors
        parsed.append((SymbolInfo(symbol, symbol, currency, SOURCE), bars))
        report.files[symbol] = len(bars)
    if report.errors:
        report.files.clear()
        return report
    with postgres.transaction() as cur:
        for info, bars in parsed:
            price_store.upsert(cur, info, bars)
    cache = ReadThroughCache(cache_ring())
    for info, _ in parsed:
        cache.forget(cache_key("quote", info.symbol), cache_key("history", info.symbol))
    return report


class CsvProvider:
    name = SOURCE

    def symbols(self) -> list[SymbolInfo]:
        return price_store.symbols(SOURCE)

    def daily_bars(self, symbol: str) -> list[Bar] | None:
        return price_store.load(symbol, SOURCE) or None

    def quote(self, symbol: str) -> Quote | None:
        info = price_store.info(symbol, SOURCE)
        bars = self.daily_bars(symbol) if info else None
        return quote_from_bars(info, bars) if info and bars else None
