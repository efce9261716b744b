"""A market data provider for tests: the last 900 SPX sample bars under any symbol that starts
with a given prefix (a test module's own symbols), and nothing under any other."""

from __future__ import annotations

from stockpred.prices import SymbolInfo, quote_from_bars
from stockpred.sample_data import load_series


class AnySymbol:
    name = "any"

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def bars(self):
        return list(load_series("SPX")[-900:])

    def daily_bars(self, symbol):
        return self.bars() if symbol.startswith(self.prefix) else None

    def symbols(self):
        return []

    def quote(self, symbol):
        info = SymbolInfo(symbol, "Test", "USD", self.name)
        return quote_from_bars(info, self.bars()) if symbol.startswith(self.prefix) else None
