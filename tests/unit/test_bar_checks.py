"""Bars a model can stand on: a session's partial bar is dropped until New York's close, splits
in an unadjusted series are found and adjusted (Alpha Vantage's own coefficients when it sends
them), crashes are left alone, and MarketData.history serves (and caches) adjusted bars."""

import datetime as dt
import itertools
import json
import logging
import math
import random

import pytest

from stockpred.market import bar_checks
from stockpred.market.alphavantage import parse_daily
from stockpred.market.bar_checks import (
    Split,
    adjust_for_splits,
    complete_bars,
    detect_splits,
    is_complete,
    unexplained_jumps,
)
from stockpred.market.market_data import MarketData
from stockpred.market.prices import Bar, SymbolInfo, quote_from_bars
from stockpred.stores.cache import Lookup

UTC = dt.UTC


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def bar(day: dt.date, close: float = 100.0, open_: float | None = None,
        volume: int = 1_000_000) -> Bar:
    o = close if open_ is None else open_
    return Bar(day, o, max(o, close) * 1.01, min(o, close) * 0.99, close, volume)


# --- partial bars -------------------------------------------------------------------------

WED_JULY = dt.date(2024, 7, 10)      # EDT: New York is UTC-4
WED_JANUARY = dt.date(2024, 1, 10)   # EST: New York is UTC-5


@pytest.mark.parametrize(("day", "now", "complete"), [
    (WED_JULY, utc(2024, 7, 10, 19, 59), False),     # 15:59 EDT
    (WED_JULY, utc(2024, 7, 10, 20, 0), True),       # 16:00 EDT
    (WED_JANUARY, utc(2024, 1, 10, 20, 59), False),  # 15:59 EST (16:59 if taken as EDT)
    (WED_JANUARY, utc(2024, 1, 10, 21, 0), True),    # 16:00 EST
    (WED_JANUARY, utc(2024, 1, 10, 20, 0), False),   # 15:00 EST (16:00 if taken as EDT)
    (WED_JULY, utc(2024, 7, 10, 14, 0), False),      # 10:00 EDT, mid-session
    (WED_JULY, utc(2024, 7, 11, 1, 0), True),        # 21:00 EDT, already the 11th in UTC
])
def test_todays_bar_is_complete_from_the_new_york_close(day, now, complete):
    assert is_complete(day, now) is complete


def test_partial_bar_is_dropped_during_the_session_and_kept_after_the_close():
    bars = [bar(dt.date(2024, 7, 8)), bar(dt.date(2024, 7, 9)), bar(WED_JULY, 101.5)]
    during = complete_bars(bars, utc(2024, 7, 10, 19, 59))
    assert [b.date for b in during] == [dt.date(2024, 7, 8), dt.date(2024, 7, 9)]
    assert complete_bars(bars, utc(2024, 7, 10, 20, 0)) == bars
    january = [bar(dt.date(2024, 1, 9)), bar(WED_JANUARY, 101.5)]
    assert complete_bars(january, utc(2024, 1, 10, 20, 59)) == january[:1]  # 15:59 EST
    assert complete_bars(january, utc(2024, 1, 10, 21, 0)) == january        # 16:00 EST


def test_nothing_is_dropped_on_a_weekend():
    friday, saturday = dt.date(2024, 7, 12), dt.date(2024, 7, 13)
    bars = [bar(dt.date(2024, 7, 11)), bar(friday)]
    assert complete_bars(bars, utc(2024, 7, 13, 14, 0)) == bars      # Saturday 10:00 EDT
    odd = [bar(friday), bar(saturday)]                               # a bar dated on the weekend
    assert complete_bars(odd, utc(2024, 7, 13, 14, 0)) == odd
    assert is_complete(dt.date(2024, 1, 14), utc(2024, 1, 14, 15, 0))  # Sunday 10:00 EST


def test_a_stale_last_bar_is_kept():
    bars = [bar(dt.date(2024, 7, 8)), bar(dt.date(2024, 7, 9))]
    assert complete_bars(bars, utc(2024, 7, 10, 14, 0)) == bars      # Wednesday 10:00 EDT


def test_a_future_dated_bar_is_not_complete():
    # 20:30 EDT on the 10th is already the 11th in UTC: a bar of the 11th is in New York's future.
    now = utc(2024, 7, 11, 0, 30)
    assert not is_complete(dt.date(2024, 7, 11), now)
    assert not is_complete(dt.date(2024, 7, 12), utc(2024, 7, 10, 21, 0))
    bars = [bar(dt.date(2024, 7, 9)), bar(WED_JULY), bar(dt.date(2024, 7, 11))]
    assert [b.date for b in complete_bars(bars, now)] == [dt.date(2024, 7, 9), WED_JULY]


def test_complete_bars_of_nothing_and_a_naive_now_taken_as_utc():
    assert complete_bars([], utc(2024, 7, 10, 14, 0)) == []
    assert not is_complete(WED_JULY, dt.datetime(2024, 7, 10, 19, 59))
    assert is_complete(WED_JULY, dt.datetime(2024, 7, 10, 20, 0))


# --- splits ------------------------------------------------------------------------------

FOUR_FOR_ONE, ONE_FOR_TEN = 60, 120  # indexes of the first bars after each planted split


def trading_days(n: int, start: dt.date = dt.date(2023, 1, 2)) -> list[dt.date]:
    days, day = [], start
    while len(days) < n:
        if day.weekday() < 5:
            days.append(day)
        day += dt.timedelta(days=1)
    return days


def true_series(n: int = 160, seed: int = 7) -> list[Bar]:
    """A random walk (1% daily moves) in today's share terms."""
    rng = random.Random(seed)
    bars, close = [], 50.0
    for day in trading_days(n):
        open_ = close * math.exp(rng.gauss(0, 0.004))
        close = open_ * math.exp(rng.gauss(0, 0.01))
        bars.append(Bar(day, open_, max(open_, close) * 1.005, min(open_, close) * 0.995, close,
                        rng.randrange(800_000, 1_200_000, 20)))
    return bars


def raw_series(true: list[Bar]) -> list[Bar]:
    """`true` as an unadjusted feed prints it: a 4:1 split, later a 1:10 reverse split."""
    out = []
    for i, b in enumerate(true):
        factor = (4.0 if i < FOUR_FOR_ONE else 1.0) * (0.1 if i < ONE_FOR_TEN else 1.0)
        out.append(Bar(b.date, b.open * factor, b.high * factor, b.low * factor, b.close * factor,
                       round(b.volume / factor)))
    return out


def test_planted_splits_are_found_with_their_dates_and_ratios():
    true = true_series()
    raw = raw_series(true)
    splits = detect_splits(raw)
    assert [(s.date, s.ratio) for s in splits] == [
        (true[FOUR_FOR_ONE].date, 4.0), (true[ONE_FOR_TEN].date, 0.1)]
    observed = [raw[i - 1].close / raw[i].close for i in (FOUR_FOR_ONE, ONE_FOR_TEN)]
    assert [s.observed for s in splits] == pytest.approx(observed)
    assert splits[0].observed == pytest.approx(4 * true[FOUR_FOR_ONE - 1].close
                                               / true[FOUR_FOR_ONE].close)
    assert unexplained_jumps(raw, splits) == []


def test_adjusted_series_has_continuous_returns_and_scaled_volume():
    true = true_series()
    raw = raw_series(true)
    adjusted = adjust_for_splits(raw, detect_splits(raw))
    assert [b.date for b in adjusted] == [b.date for b in raw]
    for got, want in zip(adjusted, true, strict=True):
        assert (got.open, got.high, got.low, got.close) == pytest.approx(
            (want.open, want.high, want.low, want.close), rel=1e-12)
    moves = [abs(math.log(b.close / a.close)) for a, b in itertools.pairwise(adjusted)]
    assert max(moves) < 0.06                    # the raw series moved log 1.39 and 2.30
    assert max(abs(math.log(b.close / a.close)) for a, b in itertools.pairwise(raw)) > 1.3
    # Before both splits: prices / (4 * 0.1), volume * 0.4; between them: prices * 10, volume / 10.
    assert adjusted[0].close == pytest.approx(raw[0].close / 0.4)
    assert adjusted[0].volume == round(raw[0].volume * 0.4)
    assert adjusted[FOUR_FOR_ONE].close == pytest.approx(raw[FOUR_FOR_ONE].close * 10)
    assert adjusted[FOUR_FOR_ONE].volume == round(raw[FOUR_FOR_ONE].volume * 0.1)
    assert adjusted[ONE_FOR_TEN:] == raw[ONE_FOR_TEN:]
    # Value traded is unchanged by the adjustment.
    for a, r in zip(adjusted, raw, strict=True):
        assert a.close * a.volume == pytest.approx(r.close * r.volume, rel=1e-5)


def test_no_splits_leaves_the_bars_as_they_are():
    true = true_series()
    assert detect_splits(true) == []
    assert adjust_for_splits(true, []) == true


@pytest.mark.parametrize(("prev_close", "open_", "close", "ratio"), [
    (499.23, 127.58, 129.04, 4.0),     # AAPL 2020-08-31: the close is 3.4% off the ratio
    (2213.40, 444.61, 498.32, 5.0),    # TSLA 2020-08-31: closed 12.6% above its open
    (1208.88, 120.37, 121.79, 10.0),   # NVDA 2024-06-10
    (3.10, 30.50, 31.20, 0.1),         # a 1-for-10 reverse split
    (150.0, 101.0, 99.0, 1.5),         # 3-for-2
])
def test_real_looking_split_days_are_splits(prev_close, open_, close, ratio):
    bars = [bar(dt.date(2020, 8, 28), prev_close), bar(dt.date(2020, 8, 31), close, open_)]
    assert [(s.date, s.ratio) for s in detect_splits(bars)] == [(dt.date(2020, 8, 31), ratio)]


@pytest.mark.parametrize(("open_", "close"), [
    (72.0, 70.0),    # a 30% crash: gap log 0.33, nearest ratio 3:2 is 8% away
    (55.0, 50.0),    # a 50% crash gapping 45%: 1.82x is 9% from 2:1
    (50.5, 35.0),    # gaps exactly like 2:1 but keeps falling to -65%: close 44% from the ratio
    (80.0, 79.0),    # a 20% drop, like 5:4, which is not in the list
])
def test_crashes_are_not_splits(open_, close):
    bars = [bar(dt.date(2024, 3, 4), 100.0), bar(dt.date(2024, 3, 5), close, open_),
            bar(dt.date(2024, 3, 6), close * 1.01)]
    assert detect_splits(bars) == []
    assert adjust_for_splits(bars, detect_splits(bars)) == bars


def test_a_large_jump_that_is_no_split_is_reported_not_adjusted():
    bars = [bar(dt.date(2024, 3, 4), 100.0), bar(dt.date(2024, 3, 5), 50.0, 55.0),
            bar(dt.date(2024, 3, 6), 51.0), bar(dt.date(2024, 3, 7), 52.0, 51.5)]
    assert detect_splits(bars) == []
    jumps = unexplained_jumps(bars)
    assert [(j.date, j.ratio) for j in jumps] == [(dt.date(2024, 3, 5), 2.0)]
    # A 30% crash (log 0.36) is a big day, not a jump worth a warning.
    assert unexplained_jumps([bar(dt.date(2024, 3, 4), 100.0),
                              bar(dt.date(2024, 3, 5), 70.0, 72.0)]) == []


def test_thresholds_are_the_documented_ones():
    assert (bar_checks.GAP_TOLERANCE, bar_checks.CLOSE_TOLERANCE) == (0.03, 0.15)
    assert (bar_checks.MIN_SPLIT_MOVE, bar_checks.JUMP_MOVE) == (0.25, 0.5)
    assert 1.25 not in bar_checks.SPLIT_RATIOS and 0.8 not in bar_checks.SPLIT_RATIOS
    assert all(abs(math.log(r)) > bar_checks.MIN_SPLIT_MOVE for r in bar_checks.SPLIT_RATIOS)


def test_several_splits_adjust_cumulatively():
    days = trading_days(4)
    bars = [bar(days[0], 400.0), bar(days[1], 200.0), bar(days[2], 100.0), bar(days[3], 100.0)]
    splits = [Split(days[2], 2.0, 2.0), Split(days[1], 2.0, 2.0)]  # any order
    adjusted = adjust_for_splits(bars, splits)
    assert [b.close for b in adjusted] == [100.0, 100.0, 100.0, 100.0]
    assert [b.volume for b in adjusted] == [4_000_000, 2_000_000, 1_000_000, 1_000_000]


# --- Alpha Vantage split coefficients -----------------------------------------------------

AAPL_ROWS = {  # 2020-08-31 was Apple's 4-for-1 split
    "2020-08-27": ("508.5700", "509.9400", "495.3300", "500.0400", "38888096"),
    "2020-08-28": ("504.0500", "505.7700", "498.3100", "499.2300", "46907479"),
    "2020-08-31": ("127.5800", "131.0000", "126.0000", "129.0400", "225702688"),
    "2020-09-01": ("132.7600", "134.8000", "130.5300", "134.1800", "151948100"),
}


def adjusted_body() -> dict:
    """TIME_SERIES_DAILY_ADJUSTED as the provider sends it (volume is `6. volume` there)."""
    series = {}
    for day, (o, h, lo, c, v) in AAPL_ROWS.items():
        series[day] = {"1. open": o, "2. high": h, "3. low": lo, "4. close": c,
                       "5. adjusted close": c, "6. volume": v, "7. dividend amount": "0.0000",
                       "8. split coefficient": "4.0" if day == "2020-08-31" else "1.0"}
    return {"Meta Data": {"1. Information": "Daily Time Series with Splits and Dividend Events",
                          "2. Symbol": "AAPL", "3. Last Refreshed": "2020-09-01",
                          "4. Output Size": "Compact", "5. Time Zone": "US/Eastern"},
            "Time Series (Daily)": dict(reversed(series.items()))}


def daily_body(coefficients: bool) -> dict:
    """TIME_SERIES_DAILY's shape (ALPHAVANTAGE.md), with or without `8. split coefficient`."""
    series = {}
    for day, (o, h, lo, c, v) in AAPL_ROWS.items():
        series[day] = {"1. open": o, "2. high": h, "3. low": lo, "4. close": c, "5. volume": v}
        if coefficients:
            series[day]["8. split coefficient"] = "4.0" if day == "2020-08-31" else "1.0"
    return {"Meta Data": {"1. Information": "Daily Prices (open, high, low, close) and Volumes",
                          "2. Symbol": "AAPL", "3. Last Refreshed": "2020-09-01",
                          "4. Output Size": "Compact", "5. Time Zone": "US/Eastern"},
            "Time Series (Daily)": dict(reversed(series.items()))}


@pytest.mark.parametrize("body", [adjusted_body(), daily_body(coefficients=True)],
                         ids=["daily-adjusted", "daily-with-coefficient"])
def test_split_coefficient_from_alpha_vantage_adjusts_the_bars(body):
    bars = parse_daily(body)
    assert [b.date.isoformat() for b in bars] == list(AAPL_ROWS)
    assert (bars[0].open, bars[0].close, bars[0].volume) == pytest.approx(
        (127.1425, 125.01, 155552384))
    assert (bars[1].high, bars[1].low, bars[1].close, bars[1].volume) == pytest.approx(
        (126.4425, 124.5775, 124.8075, 187629916))
    assert (bars[2].open, bars[2].close, bars[2].volume) == (127.58, 129.04, 225702688)
    assert (bars[3].close, bars[3].volume) == (134.18, 151948100)


def test_a_coefficient_is_trusted_over_detection():
    # The provider says 2:1 where the prices look like 4:1: its word is taken, not a guess.
    body = daily_body(coefficients=True)
    body["Time Series (Daily)"]["2020-08-31"]["8. split coefficient"] = "2.0"
    assert parse_daily(body)[1].close == pytest.approx(499.23 / 2)


def test_free_series_is_parsed_as_sent_even_across_a_split():
    bars = parse_daily(daily_body(coefficients=False))
    assert [b.close for b in bars] == [500.04, 499.23, 129.04, 134.18]
    assert [b.volume for b in bars] == [38888096, 46907479, 225702688, 151948100]


# --- through MarketData -------------------------------------------------------------------

class ListProvider:
    """Fixed bars under one symbol."""

    name = "list"

    def __init__(self, symbol: str, bars: list[Bar]) -> None:
        self.symbol, self._bars, self.calls = symbol, bars, 0

    def symbols(self):
        return [SymbolInfo(self.symbol, "Test", "USD", self.name)]

    def daily_bars(self, symbol):
        self.calls += 1
        return list(self._bars) if symbol == self.symbol else None

    def quote(self, symbol):
        return quote_from_bars(self.symbols()[0], self._bars) if symbol == self.symbol else None


class DictCache:
    """ReadThroughCache's get_or_load over a dict: JSON bytes stored, decoded on a hit."""

    def __init__(self) -> None:
        self.entries: dict[str, bytes] = {}

    def get_or_load(self, cache_key, ttl_s, load, missing_ttl_s=60, keep_last_s=0,
                    decode=json.loads):
        if cache_key in self.entries:
            return Lookup(decode(self.entries[cache_key]), True)
        value = load()
        self.entries[cache_key] = json.dumps(value).encode()
        return Lookup(value, False)


@pytest.fixture
def market_log():
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Collect(logging.WARNING)
    logger = logging.getLogger("stockpred.market")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def test_history_returns_and_caches_split_adjusted_bars(market_log):
    true = true_series()
    raw = raw_series(true)
    provider, cache = ListProvider("SPLT", raw), DictCache()
    market = MarketData([provider], cache)

    first, lookup = market.history("SPLT")
    assert not lookup.hit and first.source == "list"
    assert [b.close for b in first.bars] == pytest.approx([b.close for b in true], rel=1e-12)
    assert first.bars[0].volume == round(raw[0].volume * 0.4)
    assert [(r.getMessage(), r.fields) for r in market_log] == [
        ("history adjusted for a split", {"symbol": "SPLT", "source": "list",
                                          "date": true[FOUR_FOR_ONE].date.isoformat(),
                                          "ratio": 4.0,
                                          "observed": pytest.approx(
                                              raw[FOUR_FOR_ONE - 1].close
                                              / raw[FOUR_FOR_ONE].close, abs=1e-4)}),
        ("history adjusted for a split", {"symbol": "SPLT", "source": "list",
                                          "date": true[ONE_FOR_TEN].date.isoformat(),
                                          "ratio": 0.1,
                                          "observed": pytest.approx(
                                              raw[ONE_FOR_TEN - 1].close
                                              / raw[ONE_FOR_TEN].close, abs=1e-4)}),
    ]

    # The cache holds the adjusted bars: a hit serves them without asking the provider again.
    cached = json.loads(next(iter(cache.entries.values())))
    assert cached["bars"][0]["close"] == pytest.approx(true[0].close, rel=1e-12)
    again, lookup = market.history("SPLT")
    assert lookup.hit and provider.calls == 1
    assert again.bars == first.bars


def test_history_leaves_an_unexplained_jump_alone_and_warns(market_log):
    days = trading_days(4)
    bars = [bar(days[0], 100.0), bar(days[1], 50.0, 55.0), bar(days[2], 51.0), bar(days[3], 52.0)]
    history, _ = MarketData([ListProvider("CRSH", bars)], DictCache()).history("CRSH")
    assert history.bars == bars
    assert [(r.getMessage(), r.fields) for r in market_log] == [
        ("history has an unexplained jump", {"symbol": "CRSH", "source": "list",
                                             "date": days[1].isoformat(), "ratio": 2.0})]
