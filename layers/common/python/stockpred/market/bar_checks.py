"""Integrity checks on daily bars before anything learns from them: drop a session's partial bar,
find stock splits in an unadjusted series, and adjust prices for them.

Pure functions on `stockpred.market.prices.Bar` with the standard library only, so anything (the ML
layer included) can import them without pulling in the data services.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from zoneinfo import ZoneInfo

from stockpred.market.prices import Bar

# US equities: a session's bar is final once the exchange closes, in the exchange's time zone.
MARKET_TZ = ZoneInfo("America/New_York")
MARKET_CLOSE = dt.time(16, 0)

# Split ratios seen in practice (new shares per old share): forward splits, then reverse ones.
# 5:4 (log 0.223) is left out on purpose: a 20% overnight drop is an ordinary bad day for a
# small stock, so it cannot be told from a crash by prices alone. 7:1 is in because it happens
# (Apple, 2014).
SPLIT_RATIOS: tuple[float, ...] = (
    2.0, 3.0, 4.0, 5.0, 7.0, 8.0, 10.0, 15.0, 20.0, 1.5,
    1 / 2, 1 / 3, 1 / 4, 1 / 5, 1 / 8, 1 / 10, 1 / 15, 1 / 20, 1 / 25, 1 / 30, 1 / 50,
)
# How close the overnight gap prev_close -> open must be to a ratio (3%, compared in log terms).
# Nothing trades between the close and the open but news, so a split's gap is the ratio within
# about 1-2% (AAPL 4:1 in 2020: 3.91, NVDA 10:1 in 2024: 10.04), while a crash landing within 3%
# of a ratio by chance is rare. Neighbouring ratios are at least log 0.13 apart (7 and 8), so the
# bands never overlap.
GAP_TOLERANCE = 0.03
# How close the split day's close must be. Looser than the gap: the close carries the split day's
# own trading (TSLA's 5:1 day in 2020 closed 12.6% above its open, AAPL's 4:1 day 3.4% above),
# so it only confirms the open was not a bad print. Still far tighter than the distance to "no
# split" for every ratio in the list (log 0.405 at least).
CLOSE_TOLERANCE = 0.15
# A split must move the price more than an ordinary day can (|log move| > 0.25, about -22%/+28%).
# Every ratio above already clears it (3:2 is log 0.405); it keeps a small ratio, if one is ever
# added, from turning crashes into "splits".
MIN_SPLIT_MOVE = 0.25
# A close-to-close move beyond this (|log| > 0.5, about -39%/+65%) that is no split is reported as
# an unexplained jump: maybe a real crash, maybe a split we do not know, so the bars stay as they are.
JUMP_MOVE = 0.5


@dataclass(frozen=True)
class Split:
    """A split taking effect on `date` (the first bar after it), `ratio` new shares per old
    (4.0 for 4-for-1, 0.1 for 1-for-10), and the observed close-to-close ratio prev_close/close."""

    date: dt.date
    ratio: float
    observed: float


@dataclass(frozen=True)
class Jump:
    """A large close-to-close move on `date` that matches no split: `ratio` is prev_close/close."""

    date: dt.date
    ratio: float


def _market_now(now: dt.datetime | None) -> dt.datetime:
    """`now` (default: the current time; a naive value is taken as UTC) in New York time."""
    now = now or dt.datetime.now(dt.UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.UTC)
    return now.astimezone(MARKET_TZ)


def is_complete(bar_date: dt.date, now: dt.datetime | None = None) -> bool:
    """Whether the daily bar of `bar_date` is final at `now`.

    A bar of a day before New York's current date is final; one dated later is not. A bar of
    today is final from 16:00 New York time (daylight saving time follows from the zone); on a
    weekend there is no session, so it counts as final. Exchange holidays and early closes are
    not known here: a bar dated on one is kept only after 16:00.
    """
    local = _market_now(now)
    today = local.date()
    if bar_date != today:
        return bar_date < today
    return today.weekday() >= 5 or local.time() >= MARKET_CLOSE


def complete_bars(bars: Sequence[Bar], now: dt.datetime | None = None) -> list[Bar]:
    """`bars` (oldest first) without a last bar that is not final yet (see `is_complete`)."""
    bars = list(bars)
    if bars and not is_complete(bars[-1].date, now):
        bars.pop()
    return bars


def _nearest_ratio(move: float) -> float:
    """The split ratio nearest (in log terms) to `move`, a prev_close/price ratio."""
    return min(SPLIT_RATIOS, key=lambda r: abs(math.log(move / r)))


def _within(move: float, ratio: float, tolerance: float) -> bool:
    return abs(math.log(move / ratio)) <= math.log1p(tolerance)


def detect_splits(bars: Sequence[Bar]) -> list[Split]:
    """The splits an unadjusted series (oldest first) shows, oldest first.

    A day is a split when prev_close/open is within GAP_TOLERANCE of a ratio in SPLIT_RATIOS,
    prev_close/close is within CLOSE_TOLERANCE of the same ratio, and the move is larger than
    MIN_SPLIT_MOVE in log terms (see each constant for why).
    """
    splits = []
    for prev, bar in itertools.pairwise(bars):
        if min(prev.close, bar.open, bar.close) <= 0:
            continue
        gap = prev.close / bar.open
        if abs(math.log(gap)) <= MIN_SPLIT_MOVE:
            continue
        ratio = _nearest_ratio(gap)
        observed = prev.close / bar.close
        if _within(gap, ratio, GAP_TOLERANCE) and _within(observed, ratio, CLOSE_TOLERANCE):
            splits.append(Split(bar.date, ratio, observed))
    return splits


def unexplained_jumps(bars: Sequence[Bar], splits: Iterable[Split] = ()) -> list[Jump]:
    """Close-to-close moves larger than JUMP_MOVE (log) on days that are not in `splits`."""
    split_days = {s.date for s in splits}
    return [
        Jump(bar.date, prev.close / bar.close)
        for prev, bar in itertools.pairwise(bars)
        if bar.date not in split_days and min(prev.close, bar.close) > 0
        and abs(math.log(prev.close / bar.close)) > JUMP_MOVE
    ]


def adjust_for_splits(bars: Sequence[Bar], splits: Iterable[Split]) -> list[Bar]:
    """`bars` in post-split terms: before each split, prices divided by its ratio and volume
    multiplied by it (cumulatively), so returns are continuous and value traded is unchanged."""
    ordered = sorted(splits, key=lambda s: s.date)
    if not ordered:
        return list(bars)
    adjusted = []
    for bar in bars:
        factor = math.prod(s.ratio for s in ordered if s.date > bar.date)
        if factor == 1.0:
            adjusted.append(bar)
            continue
        adjusted.append(replace(bar, open=bar.open / factor, high=bar.high / factor,
                                low=bar.low / factor, close=bar.close / factor,
                                volume=round(bar.volume * factor)))
    return adjusted
