"""Alpha Vantage adapter: TIME_SERIES_DAILY (compact) and GLOBAL_QUOTE over HTTPS.

Every answer is HTTP 200, errors included, so success is read from the body's keys:
`Error Message` is a client error (an unknown symbol: not retried), `Note` and `Information`
are throttling (the provider is unavailable for now). The free tier returns about 100 days,
so every series fetched is kept in PostgreSQL and the history builds up over time.
The API key is sent as a query parameter and never logged.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from typing import Any

import pybreaker
import requests

from stockpred.market import breakers, price_store
from stockpred.market.bar_checks import Split, adjust_for_splits
from stockpred.market.prices import Bar, ProviderUnavailable, Quote, SymbolInfo
from stockpred.observability.logs import get_logger

log = get_logger("alphavantage")
SOURCE = "alphavantage"
# In TIME_SERIES_DAILY_ADJUSTED rows: new shares per old on the split's first day, else "1.0".
SPLIT_COEFFICIENT = "8. split coefficient"


class UnknownToProvider(LookupError):
    """Alpha Vantage answered `Error Message`: it does not know this symbol."""


def check_body(body: Any) -> dict[str, Any]:
    """The body if it carries data; raises for each error shape Alpha Vantage sends with a 200."""
    if not isinstance(body, dict):
        raise ProviderUnavailable("Alpha Vantage answered something that is not a JSON object")
    if "Error Message" in body:
        raise UnknownToProvider(str(body["Error Message"])[:200])
    for key in ("Note", "Information"):
        if key in body:
            raise ProviderUnavailable(f"Alpha Vantage throttled the request ({key})")
    return body


def parse_daily(body: Any) -> list[Bar]:
    """Bars oldest first, as sent (TIME_SERIES_DAILY is not split-adjusted). Rows that carry
    `8. split coefficient` (the adjusted series, whose volume is `6. volume`) are adjusted for the
    splits it gives instead."""
    series = check_body(body).get("Time Series (Daily)")
    if not isinstance(series, dict):
        raise ProviderUnavailable("Alpha Vantage daily answer has no 'Time Series (Daily)'")
    try:
        bars = [
            Bar(dt.date.fromisoformat(day), float(v["1. open"]), float(v["2. high"]),
                float(v["3. low"]), float(v["4. close"]),
                int(float(v["6. volume" if "5. adjusted close" in v else "5. volume"])))
            for day, v in series.items()
        ]
        coefficients = {dt.date.fromisoformat(day): float(v[SPLIT_COEFFICIENT])
                        for day, v in series.items() if SPLIT_COEFFICIENT in v}
    except (KeyError, TypeError, ValueError) as exc:
        raise ProviderUnavailable(f"Alpha Vantage daily answer is malformed: {exc}") from exc
    bars.sort(key=lambda b: b.date)
    if any(not math.isfinite(c) or c <= 0 for c in coefficients.values()):
        raise ProviderUnavailable("Alpha Vantage daily answer has a bad split coefficient")
    # A coefficient on the oldest bar has nothing before it to adjust in this answer.
    splits = [Split(bar.date, coefficients[bar.date], prev.close / bar.close if bar.close else 0.0)
              for prev, bar in itertools.pairwise(bars)
              if coefficients.get(bar.date, 1.0) != 1.0]
    return adjust_for_splits(bars, splits)


def parse_quote(body: Any, name: str | None = None) -> Quote | None:
    """A quote, or None for the empty `{"Global Quote": {}}` of an unknown symbol."""
    data = check_body(body).get("Global Quote")
    if data is None:
        raise ProviderUnavailable("Alpha Vantage quote answer has no 'Global Quote'")
    if not data:
        return None
    try:
        symbol = data["01. symbol"]
        return Quote(symbol=symbol, price=float(data["05. price"]),
                     previous_close=float(data["08. previous close"]),
                     as_of=dt.date.fromisoformat(data["07. latest trading day"]),
                     currency="USD", name=name or symbol, source=SOURCE)
    except (KeyError, TypeError, ValueError) as exc:
        raise ProviderUnavailable(f"Alpha Vantage quote answer is malformed: {exc}") from exc


class AlphaVantageProvider:
    name = SOURCE

    def __init__(self, api_key: str, base_url: str, timeout_s: float = 10.0) -> None:
        self._key = api_key
        self._base = base_url.rstrip("/")
        self._timeout = timeout_s
        self._session = requests.Session()

    def _get(self, function: str, symbol: str, **params: str) -> Any:
        """A checked body, through the breaker: failures and throttling count, unknown symbols don't."""
        try:
            return breakers.breaker(SOURCE, (UnknownToProvider,)).call(
                self._fetch, function, symbol, params)
        except pybreaker.CircuitBreakerError:
            raise ProviderUnavailable("Alpha Vantage circuit breaker is open") from None

    def _fetch(self, function: str, symbol: str, params: dict[str, str]) -> Any:
        try:
            resp = self._session.get(
                f"{self._base}/query",
                params={"function": function, "symbol": symbol, "apikey": self._key, **params},
                timeout=self._timeout,
            )
        except requests.RequestException as exc:
            log.warning("alpha vantage unreachable", extra={"fields": {"function": function}})
            raise ProviderUnavailable(f"Alpha Vantage unreachable: {type(exc).__name__}") from exc
        if resp.status_code != 200:
            raise ProviderUnavailable(f"Alpha Vantage answered HTTP {resp.status_code}")
        try:
            body = resp.json()
        except ValueError as exc:
            raise ProviderUnavailable("Alpha Vantage answered non-JSON") from exc
        return check_body(body)

    def symbols(self) -> list[SymbolInfo]:
        return price_store.symbols(SOURCE)

    def daily_bars(self, symbol: str) -> list[Bar] | None:
        try:
            fresh = parse_daily(self._get("TIME_SERIES_DAILY", symbol, outputsize="compact"))
        except UnknownToProvider:
            return None
        price_store.save(SymbolInfo(symbol, symbol, "USD", SOURCE), fresh)
        return price_store.load(symbol, SOURCE)

    def quote(self, symbol: str) -> Quote | None:
        try:
            return parse_quote(self._get("GLOBAL_QUOTE", symbol))
        except UnknownToProvider:
            return None

