"""The `sample` provider: real daily OHLCV shipped inside the `arch` package (NCSA licence).

S&P 500 (SPX) and NASDAQ Composite (IXIC), 1999-01-04 to 2018-12-31. Works offline on a fresh
machine. On Lambda the common layer ships the two files in `stockpred/market/sample/` (its Makefile
takes them from the pinned `arch` wheel); locally they are read from the installed `arch`
package, located without importing it (which would pull in statsmodels).
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import gzip
import importlib.util
from pathlib import Path

from stockpred.market.prices import Bar, Quote, SymbolInfo, quote_from_bars

SAMPLE_SERIES = {
    "SPX": ("S&P 500 Index", ("sp500", "sp500.csv.gz")),
    "IXIC": ("NASDAQ Composite Index", ("nasdaq", "nasdaq.csv.gz")),
}
SHIPPED_DIR = Path(__file__).with_name("sample")


def _sample_file(symbol: str) -> Path:
    folder, filename = SAMPLE_SERIES[symbol][1]
    if (SHIPPED_DIR / filename).is_file():
        return SHIPPED_DIR / filename
    spec = importlib.util.find_spec("arch")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("sample data: neither the layer's files nor the 'arch' package")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / folder / filename


@functools.cache
def load_series(symbol: str) -> tuple[Bar, ...]:
    bars = []
    with gzip.open(_sample_file(symbol), "rt", newline="") as f:
        for row in csv.DictReader(f):
            month, day, year = (int(x) for x in row["Date"].split("/"))
            bars.append(Bar(dt.date(year, month, day), float(row["Open"]), float(row["High"]),
                            float(row["Low"]), float(row["Close"]), int(float(row["Volume"]))))
    bars.sort(key=lambda b: b.date)
    return tuple(bars)


@functools.cache
def available() -> bool:
    """The sample files are there (shipped in the layer, or from the local `arch` package)."""
    try:
        return all(_sample_file(symbol).is_file() for symbol in SAMPLE_SERIES)
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
