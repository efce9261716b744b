"""Market data values: daily bars, quotes, symbols, and the errors providers raise."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any, Protocol


class UnknownSymbol(LookupError):
    """No provider has data for this symbol."""


class ProviderUnavailable(RuntimeError):
    """An upstream could not answer now (down, throttled, malformed answer): try later."""


@dataclass(frozen=True)
class Bar:
    date: dt.date
    open: float
    high: float
    low: float
    close: float
    volume: int

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "date": self.date.isoformat()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Bar:
        return cls(dt.date.fromisoformat(d["date"]), float(d["open"]), float(d["high"]),
                   float(d["low"]), float(d["close"]), int(d["volume"]))


@dataclass(frozen=True)
class SymbolInfo:
    symbol: str
    name: str
    currency: str
    source: str


@dataclass(frozen=True)
class Quote:
    symbol: str
    price: float
    previous_close: float | None
    as_of: dt.date
    currency: str
    name: str
    source: str

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "as_of": self.as_of.isoformat()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Quote:
        return cls(d["symbol"], float(d["price"]),
                   None if d["previous_close"] is None else float(d["previous_close"]),
                   dt.date.fromisoformat(d["as_of"]), d["currency"], d["name"], d["source"])


def quote_from_bars(info: SymbolInfo, bars: list[Bar]) -> Quote:
    last = bars[-1]
    prev = bars[-2].close if len(bars) > 1 else None
    return Quote(info.symbol, last.close, prev, last.date, info.currency, info.name, info.source)


class PriceProvider(Protocol):
    """A source of daily prices. `None` from a lookup means "not a symbol I know"."""

    name: str

    def symbols(self) -> list[SymbolInfo]: ...

    def daily_bars(self, symbol: str) -> list[Bar] | None: ...

    def quote(self, symbol: str) -> Quote | None: ...
