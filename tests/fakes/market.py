"""A market data provider for tests: the last 900 SPX sample bars under any symbol that starts
with a given prefix (a test module's own symbols), and nothing under any other; and a prediction
asked of a Predict app in process, as API Gateway would ask it."""

from __future__ import annotations

import json

from devstack.events import rest_proxy_event
from stockpred.market.prices import SymbolInfo, quote_from_bars
from stockpred.market.sample_data import load_series


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


def predict(app, symbol: str, address: str = "10.8.0.1") -> dict:
    """GET /api/predict/<symbol> from `address`, straight into the app; the answer's body parsed
    into "json"."""
    event = rest_proxy_event(method="GET", path=f"/api/predict/{symbol}",
                             resource="/api/predict/{symbol}", path_params={"symbol": symbol},
                             headers=[], query=[], body=b"", source_ip=address)
    out = app(event, None)
    out["json"] = json.loads(out["body"])
    return out
