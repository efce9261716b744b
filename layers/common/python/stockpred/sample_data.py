"""The `sample` provider: real daily OHLCV shipped inside the `arch` package (NCSA licence).

S&P 500 (SPX) and NASDAQ Composite (IXIC), 1999-01-04 to 2018-12-31. Works offline on a fresh
machine. The files are located without importing `arch` (which would pull in statsmodels).
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import gzip
import importlib.util
from pathlib import Path

from stockpred.prices import Bar, Quote, SymbolInfo, quote_from_bars

SAMPLE_SERIES = {
    "SPX": ("S&P 500 Index", ("sp500", "sp500.csv.gz")),
    "IXIC": ("NASDAQ Composite Index", ("nasdaq", "nasdaq.csv.gz")),
}


def _arch_data_dir() -> Path:
    spec = importlib.util.find_spec("arch")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the 'arch' package (sample data) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


@functools.cache
def load_series(symbol: str) -> tuple[Bar, ...]:
    folder, filename = SAMPLE_SERIES[symbol][1]
    bars = []
    with gzip.open(_arch_data_dir() / folder / filename, "rt", newline="") as f:
        for row in csv.DictReader(f):
            month, day, year = (int(x) for x in row["Date"].split("/"))
            bars.append(Bar(dt.date(year, month, day), float(row["Open"]), float(row["High"]),
                            float(row["Low"]), float(row["Close"]), int(float(row["Volume"]))))
    bars.sort(key=lambda b: b.date)
    return tuple(bars)


@functools.cache
def available() -> bool:
    """The sample files are installed (locally; the Lambda layer does not ship `arch`)."""
    try:
        return _arch_data_dir().is_dir()
    except FileNotFoundError:
        return False


class SampleProvider:
    name = "sample"

    def symbols(self) -> list[SymbolInfo]:
        if not available():
            return []
        return [SymbolInfo(s, name, "USD", self.name) for s, (name, _) in SAMPLE_SERIES.items()]

    def daily_bars(self, symbol: str) -> list[Bar] | None:
        if symbol not in SAMPLE_SERIES or not available():
            return None
        return list(load_series(symbol))

    def quote(self, symbol: str) -> Quote | None:
        bars = self.daily_bars(symbol)
        if not bars:
            return None
        return quote_from_bars(SymbolInfo(symbol, SAMPLE_SERIES[symbol][0], "USD", self.name), bars)
