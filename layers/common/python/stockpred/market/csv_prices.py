"""CSV price files: the `csv` provider (imported into PostgreSQL) and the `s3` provider (a bucket).

Files are `<SYMBOL>.csv` with a `Date,Open,High,Low,Close,Volume` header (extra columns such as
`Adj Close` are ignored; dates as YYYY-MM-DD or M/D/YYYY). An import checks every row of every
file first and writes nothing unless all of them are good, so a folder is never half-imported.

On AWS the database sits in a private subnet, so `stockpred import-csv DIR --to s3://BUCKET`
validates the same way and uploads the files to the market data bucket (`PRICE_DATA_BUCKET`,
key `prices/<SYMBOL>.csv`), where the `s3` provider reads them from the first request on.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stockpred.market import price_store, symbols
from stockpred.market.prices import Bar, Quote, SymbolInfo, quote_from_bars
from stockpred.stores import postgres
from stockpred.stores.cache import ReadThroughCache
from stockpred.stores.cache import key as cache_key
from stockpred.stores.redis_stores import cache_ring

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
    with open(path, newline="", encoding="utf-8-sig") as f:
        return parse_lines(path.name, f)


def parse_lines(name: str, lines: Iterable[str]) -> tuple[list[Bar], list[str]]:
    """The bars of one CSV text (file `name`) and every problem found, each with its line number."""
    errors: list[str] = []
    bars: list[Bar] = []
    seen: dict[dt.date, int] = {}
    reader = csv.DictReader(lines)
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        return [], [f"{name}:1: missing column(s) {', '.join(missing)}"]
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
            errors.append(f"{name}:{line}: {exc}")
    if not bars and not errors:
        errors.append(f"{name}: no data rows")
    bars.sort(key=lambda b: b.date)
    return bars, errors


Parsed = list[tuple[SymbolInfo, list[Bar], Path]]


def _validate_folder(folder: Path, currency: str) -> tuple[ImportReport, Parsed]:
    report = ImportReport()
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() == ".csv")
    if not files:
        report.errors.append(f"{folder}: no .csv files")
        return report, []
    parsed: Parsed = []
    for path in files:
        try:
            symbol = symbols.normalise(path.stem)
        except symbols.InvalidSymbol as exc:
            report.errors.append(f"{path.name}: file name is not a symbol ({exc})")
            continue
        bars, errors = parse_file(path)
        report.errors += errors
        parsed.append((SymbolInfo(symbol, symbol, currency, SOURCE), bars, path))
        report.files[symbol] = len(bars)
    if report.errors:
        report.files.clear()
    return report, parsed


def _forget_cached(symbols_: Iterable[str]) -> None:
    cache = ReadThroughCache(cache_ring())
    for symbol in symbols_:
        cache.forget(cache_key("quote", symbol), cache_key("history", symbol))


def import_folder(folder: Path, currency: str = "USD") -> ImportReport:
    """Validates every `*.csv` in the folder, then loads all of them in one transaction or none."""
    report, parsed = _validate_folder(folder, currency)
    if not report.ok:
        return report
    with postgres.transaction() as cur:
        for info, bars, _ in parsed:
            price_store.upsert(cur, info, bars)
    _forget_cached(report.files)
    return report


S3_PREFIX = "prices/"


def upload_folder(folder: Path, s3: Any, bucket: str, prefix: str = S3_PREFIX,
                  currency: str = "USD") -> ImportReport:
    """Validates every `*.csv` in the folder like import_folder; only if all are good, uploads each
    as `<prefix><SYMBOL>.csv` for the `s3` provider (the market data bucket on AWS)."""
    report, parsed = _validate_folder(folder, currency)
    if not report.ok:
        return report
    for info, _, path in parsed:
        s3.put_object(Bucket=bucket, Key=f"{prefix}{info.symbol}.csv", Body=path.read_bytes(),
                      ContentType="text/csv", Metadata={"currency": currency})
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


class S3CsvProvider:
    """Daily bars from `<prefix><SYMBOL>.csv` objects in a bucket (uploaded by import-csv --to)."""

    name = "s3"

    def __init__(self, s3: Any, bucket: str, prefix: str = S3_PREFIX) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.prefix = prefix

    def _keys(self) -> dict[str, str]:
        keys: dict[str, str] = {}
        try:
            pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix)
            for page in pages:
                for obj in page.get("Contents", []):
                    stem = obj["Key"][len(self.prefix):]
                    if stem.endswith(".csv") and "/" not in stem:
                        keys[stem[:-4].upper()] = obj["Key"]
        except self.s3.exceptions.NoSuchBucket:
            return {}
        return keys

    def symbols(self) -> list[SymbolInfo]:
        return [SymbolInfo(symbol, symbol, "USD", self.name) for symbol in sorted(self._keys())]

    def daily_bars(self, symbol: str) -> list[Bar] | None:
        try:
            obj = self.s3.get_object(Bucket=self.bucket, Key=f"{self.prefix}{symbol}.csv")
        except (self.s3.exceptions.NoSuchKey, self.s3.exceptions.NoSuchBucket):
            return None
        text = obj["Body"].read().decode("utf-8-sig")
        bars, errors = parse_lines(f"s3://{self.bucket}/{self.prefix}{symbol}.csv", text.splitlines())
        if errors:
            raise ValueError("; ".join(errors[:5]))
        return bars or None

    def quote(self, symbol: str) -> Quote | None:
        bars = self.daily_bars(symbol)
        return quote_from_bars(SymbolInfo(symbol, symbol, "USD", self.name), bars) if bars else None
