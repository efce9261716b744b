"""Stock details and daily history: the configured provider chain behind the read-through cache.

The chain is tried in order (default: alphavantage when its secret holds a key, then imported
CSVs, then the bundled sample); the first provider that knows a symbol answers. A provider that
is down or throttled is skipped; if none could answer and one was unavailable, the caller learns
it (503), not that the symbol is unknown (404).

A cached history (twenty years are about 5,000 bars, 580 KB of JSON) is decoded once per distinct
cache entry in a warm process: while the entry's bytes are unchanged, reading it costs a bytes
comparison instead of JSON decoding and building every Bar, and History.version names the entry.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from stockpred import config
from stockpred.cloud import aws, secrets
from stockpred.config import Settings
from stockpred.market import bar_checks
from stockpred.market.alphavantage import AlphaVantageProvider
from stockpred.market.csv_prices import CsvProvider, S3CsvProvider
from stockpred.market.prices import (
    Bar,
    PriceProvider,
    ProviderUnavailable,
    Quote,
    SymbolInfo,
    UnknownSymbol,
)
from stockpred.market.sample_data import SampleProvider
from stockpred.observability.logs import get_logger
from stockpred.stores import cache as cache_mod
from stockpred.stores.cache import Lookup, ReadThroughCache
from stockpred.stores.redis_stores import cache_ring

log = get_logger("market")
MARKET_TZ = bar_checks.MARKET_TZ
# How long the last good quote/history stays servable (stale) while the providers are down.
KEEP_LAST_S = 7 * 86_400
# Decoded histories a warm process keeps (about 2 MB each for twenty years of bars).
DECODED_HISTORIES_KEPT = 8


def seconds_until_next_close(now: dt.datetime | None = None) -> int:
    """Until 16:15 New York time on the next weekday: when a new daily bar can exist."""
    now = (now or dt.datetime.now(dt.UTC)).astimezone(MARKET_TZ)
    close = now.replace(hour=16, minute=15, second=0, microsecond=0)
    if now >= close:
        close += dt.timedelta(days=1)
    while close.weekday() >= 5:
        close += dt.timedelta(days=1)
    return max(60, int((close - now).total_seconds()))


def build_providers(settings: Settings) -> list[PriceProvider]:
    chain: list[PriceProvider] = []
    for name in settings.market_providers:
        if name == "alphavantage":
            api_key = secrets.alphavantage_api_key()
            if api_key:
                chain.append(AlphaVantageProvider(api_key, settings.alphavantage_base_url))
        elif name == "csv":
            chain.append(CsvProvider())
        elif name == "s3":
            if settings.price_data_bucket:
                chain.append(S3CsvProvider(aws.client("s3"), settings.price_data_bucket))
        elif name == "sample":
            chain.append(SampleProvider())
        else:
            raise ValueError(f"unknown market provider {name!r} in MARKET_PROVIDERS")
    return chain


@functools.cache
def default() -> MarketData:
    """This process's MarketData, built once from the environment (a warm function reuses it)."""
    return MarketData.from_settings(config.load())


@dataclass
class History:
    symbol: str
    source: str
    bars: list[Bar]
    # A digest of the cache entry the bars were read from: equal versions, equal bars. None when
    # the bars were just loaded from a provider or served stale.
    version: str | None = None


@dataclass(frozen=True, eq=False)
class _DecodedHistory:
    raw: bytes
    source: str
    bars: tuple[Bar, ...]
    version: str


class MarketData:
    def __init__(self, providers: list[PriceProvider], cache: ReadThroughCache,
                 quote_ttl_s: int = 60) -> None:
        self.providers = providers
        self.cache = cache
        self.quote_ttl_s = quote_ttl_s
        self._decoded: OrderedDict[str, _DecodedHistory] = OrderedDict()
        self._decoded_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> MarketData:
        return cls(build_providers(settings), ReadThroughCache(cache_ring()),
                   settings.quote_ttl_s)

    def _first(self, ask: str, symbol: str) -> Any:
        unavailable: list[str] = []
        for provider in self.providers:
            try:
                answer = getattr(provider, ask)(symbol)
            except ProviderUnavailable as exc:
                log.warning("provider unavailable", extra={"fields": {
                    "provider": provider.name, "symbol": symbol, "reason": str(exc)}})
                unavailable.append(provider.name)
                continue
            if answer:
                return provider.name, answer
        if unavailable:
            raise ProviderUnavailable(f"market data unavailable from {', '.join(unavailable)}")
        return None

    def symbols(self) -> list[SymbolInfo]:
        seen: dict[str, SymbolInfo] = {}
        for provider in self.providers:
            try:
                for info in provider.symbols():
                    seen.setdefault(info.symbol, info)
            except ProviderUnavailable:
                continue
        return sorted(seen.values(), key=lambda i: i.symbol)

    def quote(self, symbol: str) -> tuple[Quote, Lookup]:
        """The latest quote and how it was found (cache hit, stale); UnknownSymbol if nobody has it."""
        def load() -> dict[str, Any] | None:
            found = self._first("quote", symbol)
            return found[1].to_json() if found else None

        got = self.cache.get_or_load(cache_mod.key("quote", symbol), self.quote_ttl_s, load,
                                     keep_last_s=KEEP_LAST_S)
        if got.value is None:
            raise UnknownSymbol(symbol)
        return Quote.from_json(got.value), got

    def history(self, symbol: str) -> tuple[History, Lookup]:
        """The daily bars, split-adjusted as they are loaded from a provider (the cache holds them so)."""
        def load() -> dict[str, Any] | None:
            found = self._first("daily_bars", symbol)
            if not found:
                return None
            bars = split_adjusted(symbol, found[0], found[1])
            return {"source": found[0], "bars": [b.to_json() for b in bars]}

        got = self.cache.get_or_load(cache_mod.key("history", symbol),
                                     seconds_until_next_close(), load, keep_last_s=KEEP_LAST_S,
                                     decode=lambda raw: self._decode_history(symbol, raw))
        if got.value is None:
            raise UnknownSymbol(symbol)
        if isinstance(got.value, _DecodedHistory):
            return History(symbol, got.value.source, list(got.value.bars), got.value.version), got
        bars = [Bar.from_json(b) for b in got.value["bars"]]
        return History(symbol, got.value["source"], bars), got

    def _decode_history(self, symbol: str, raw: bytes) -> Any:
        """The cached entry's history, decoded only when its bytes differ from the last seen."""
        with self._decoded_lock:
            kept = self._decoded.get(symbol)
            if kept is not None and kept.raw == raw:
                self._decoded.move_to_end(symbol)
                return kept
        value = json.loads(raw)
        if value == cache_mod.MISSING:
            return value
        kept = _DecodedHistory(raw, value["source"], tuple(Bar.from_json(b) for b in value["bars"]),
                               hashlib.blake2b(raw, digest_size=16).hexdigest())
        with self._decoded_lock:
            self._decoded[symbol] = kept
            self._decoded.move_to_end(symbol)
            while len(self._decoded) > DECODED_HISTORIES_KEPT:
                self._decoded.popitem(last=False)
        return kept


def split_adjusted(symbol: str, source: str, bars: list[Bar]) -> list[Bar]:
    """`bars` adjusted for the splits they show, with a warning per split; a large jump that is
    no split is logged and left alone (it may be a real crash)."""
    splits = bar_checks.detect_splits(bars)
    for split in splits:
        log.warning("history adjusted for a split", extra={"fields": {
            "symbol": symbol, "source": source, "date": split.date.isoformat(),
            "ratio": split.ratio, "observed": round(split.observed, 4)}})
    for jump in bar_checks.unexplained_jumps(bars, splits):
        log.warning("history has an unexplained jump", extra={"fields": {
            "symbol": symbol, "source": source, "date": jump.date.isoformat(),
            "ratio": round(jump.ratio, 4)}})
    return bar_checks.adjust_for_splits(bars, splits)


def details_body(quote: Quote, got: Lookup | None = None) -> dict[str, Any]:
    """The spec's details shape (`id`, `symbol`, `price`, `currency`) plus what a user wants next."""
    body: dict[str, Any] = {
        "id": f"{quote.symbol}:{quote.as_of.isoformat()}",
        "symbol": quote.symbol,
        "price": f"{quote.price:.4f}",
        "currency": quote.currency,
        "name": quote.name,
        "as_of": quote.as_of.isoformat(),
        "source": quote.source,
    }
    if quote.previous_close:
        change = quote.price - quote.previous_close
        body["previous_close"] = f"{quote.previous_close:.4f}"
        body["change"] = f"{change:.4f}"
        body["change_percent"] = f"{change / quote.previous_close * 100:.4f}%"
    body["stale"] = bool(got and got.stale)
    if got and got.stale:
        body["age_seconds"] = got.age_s
    return body
