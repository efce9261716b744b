"""Synthetic universes with planted, exactly known cross-sectional effects, for tests and benchmarks.

There is no real universe of hundreds of stocks offline, so cross-sectional code (daily rank IC,
deciles, top-k portfolios) is checked on panels drawn from a one-factor model into which a
short-term reversal and a momentum effect of chosen strength can be planted. The generator keeps
the truth it planted (`SyntheticPanel.expected_excess`), so a test can tell a real effect from a
leak or an off-by-one. numpy only.

The model, for day t and stock i (daily simple returns; `s_i` a stock's daily idiosyncratic vol):

    r[t,i]   = beta_i * m[t] + s_i * e[t,i] + planted[t,i]          floored at -90%
    m[t]     = sqrt(h[t]) * n[t],  h[t+1] = w + 0.08 m[t]^2 + 0.90 h[t],  w = vm^2 (1 - 0.98),
               vm = market_vol / sqrt(252): GARCH(1,1) market factor with annual vol market_vol
    beta_i   = clip(1 + beta_spread * N(0,1), 0.2, 2.5)
    s_i      = idio_vol / sqrt(252) * exp(0.25 N(0,1) - 0.25^2 / 2)   (lognormal spread, mean kept)
    e[t,i]   = Student-t(5) * sqrt(3/5)  (unit variance; standard normal with fat_tails=False)
    planted  = - reversal * S * z_t(r[t-1])                       short-term reversal
               + momentum * S * z_t(sum of r[t-252 .. t-21])      momentum (12-1 months)
    S        = idio_vol / sqrt(252)   one daily idiosyncratic scale common to all stocks

z_t(x) is the cross-sectional z-score, (x - mean) / std, over the stocks whose signal is observable
at the close of day t-1: for the reversal, those with a return on t-1 in the panel; for momentum,
those listed on t-1 with a first bar on or before t-253 (returns missing around a gap count as 0 in
the sum). A stock without an observable signal gets no planted term. Because S is common, a stock's
expected excess return for day t is exactly linear in the z-score, hence decreasing (reversal) or
increasing (momentum) in the cross-sectional rank, of its signal; with reversal = momentum = 0
there is no cross-sectional predictability at all (market and shocks are independent over time).

Listings, delistings and gaps: round(listings * N) stocks, chosen at random, have their first bar
on a random day after the first; round(delistings * N) have their last bar on a random day before
the last; each day strictly inside a stock's life is missing with probability `gaps` (isolated
one-day gaps). Prices: close = 100 on the first bar and close[t] = close[t-1] (1 + r[t]) after it
(the price keeps moving through a gap, only the bar is missing); open = previous close *
exp(0.3 s_i N(0,1)); high = max(open, close) * exp(0.5 s_i |N(0,1)|); low = min(open, close) *
exp(-0.5 s_i |N(0,1)|); volume = round(L_i * exp(0.4 N(0,1) + 0.25 |e[t,i]|)), L_i = exp(12.5 +
N(0,1)), integers at least 1. Every draw comes from one seeded generator: the same arguments give
the same panel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from stockml.panel import Panel

if TYPE_CHECKING:
    from stockpred.market.prices import Bar

TRADING_DAYS = 252
GARCH_ALPHA = 0.08
GARCH_BETA = 0.90
IDIO_VOL_SPREAD = 0.25  # standard deviation of log idiosyncratic vol across stocks
TAIL_DF = 5
BETA_RANGE = (0.2, 2.5)
RETURN_FLOOR = -0.9
MOMENTUM_FIRST = 252  # the momentum signal sums returns t-MOMENTUM_FIRST .. t-MOMENTUM_LAST
MOMENTUM_LAST = 21


@dataclass(frozen=True, eq=False)
class SyntheticPanel:
    """A synthetic universe and the truth planted in it.

    `expected_excess[t, i]` is stock i's expected return for day t+1 given everything up to the
    close of day t, less the cross-sectional mean of that expectation: E[r[t+1,i] | t] - mean_j
    E[r[t+1,j] | t] = planted[t+1,i] - mean_j planted[t+1,j] (the market factor has mean 0). It is
    defined where the panel has the return r[t+1,i] (pairs with `panel.returns()[t+1]`), NaN
    elsewhere and on the last row. Zero wherever defined when no effect is planted."""

    panel: Panel
    expected_excess: np.ndarray  # float64 (T, N)
    planted: np.ndarray  # float64 (T, N): planted[t, i], the effects' part of r[t, i]
    market: np.ndarray  # float64 (T,): the market factor's daily return m[t]
    betas: np.ndarray  # float64 (N,)
    idio_vols: np.ndarray  # float64 (N,): annual idiosyncratic vol of each stock, s_i * sqrt(252)
    params: dict[str, Any]  # the arguments of synthetic_panel


def synthetic_panel(
    symbols: int = 200,
    days: int = 2520,
    *,
    seed: int = 0,
    reversal: float = 0.0,
    momentum: float = 0.0,
    start: str = "2005-01-03",
    listings: float = 0.0,
    delistings: float = 0.0,
    market_vol: float = 0.16,
    idio_vol: float = 0.30,
    beta_spread: float = 0.3,
    gaps: float = 0.0005,
    fat_tails: bool = True,
) -> SyntheticPanel:
    """A universe of `symbols` stocks over `days` business days from `start` (weekdays, no
    holidays), drawn from the model in this module's docstring; `seed` fixes every draw."""
    if symbols < 2 or days < 4:
        raise ValueError(f"synthetic_panel needs at least 2 symbols and 4 days, got {symbols} x {days}")
    for name, value in (("listings", listings), ("delistings", delistings), ("gaps", gaps)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"synthetic_panel: {name} must be a fraction in [0, 1], got {value}")
    if market_vol < 0 or idio_vol <= 0 or beta_spread < 0:
        raise ValueError("synthetic_panel: market_vol and beta_spread must be >= 0, idio_vol > 0")
    params = {
        "symbols": symbols, "days": days, "seed": seed, "reversal": reversal, "momentum": momentum,
        "start": start, "listings": listings, "delistings": delistings, "market_vol": market_vol,
        "idio_vol": idio_vol, "beta_spread": beta_spread, "gaps": gaps, "fat_tails": fat_tails,
    }
    n, t_days = symbols, days
    rng = np.random.default_rng(seed)
    dates = np.busday_offset(np.datetime64(start, "D"), np.arange(t_days), roll="forward")
    width = len(str(n - 1))
    names = tuple(f"S{i:0{width}d}" for i in range(n))

    betas = np.clip(1.0 + beta_spread * rng.standard_normal(n), *BETA_RANGE)
    daily_scale = idio_vol / math.sqrt(TRADING_DAYS)
    s = daily_scale * np.exp(IDIO_VOL_SPREAD * rng.standard_normal(n) - IDIO_VOL_SPREAD**2 / 2)
    volume_level = np.exp(12.5 + rng.standard_normal(n))
    market = _garch_market(rng.standard_normal(t_days), market_vol / math.sqrt(TRADING_DAYS))
    if fat_tails:
        shocks = rng.standard_t(TAIL_DF, size=(t_days, n))
        shocks *= math.sqrt((TAIL_DF - 2) / TAIL_DF)
    else:
        shocks = rng.standard_normal((t_days, n))

    first = np.zeros(n, dtype=np.int64)
    last = np.full(n, t_days - 1, dtype=np.int64)
    late = rng.choice(n, size=round(listings * n), replace=False)
    first[late] = rng.integers(1, t_days - 2, size=late.size)
    gone = rng.choice(n, size=round(delistings * n), replace=False)
    last[gone] = rng.integers(first[gone] + 1, t_days - 1)
    rows = np.arange(t_days)[:, None]
    gap = (rng.random((t_days, n)) < gaps) & (rows > first) & (rows < last)
    gap[1:] &= ~gap[:-1]  # one-day gaps only
    alive = (rows >= first) & (rows <= last) & ~gap
    has_return = alive.copy()
    has_return[1:] &= alive[:-1]
    has_return[0] = False

    r = market[:, None] * betas + shocks * s
    if reversal or momentum:
        planted = _plant(r, has_return, first, last, reversal * daily_scale, momentum * daily_scale)
    else:
        np.maximum(r, RETURN_FLOOR, out=r)
        planted = np.zeros_like(r)

    expected_excess = np.full((t_days, n), np.nan)
    nxt = has_return[1:]
    count = nxt.sum(axis=1)
    mean = np.where(nxt, planted[1:], 0.0).sum(axis=1) / np.maximum(count, 1)
    expected_excess[:-1] = np.where(nxt, planted[1:] - mean[:, None], np.nan)

    growth = np.where(rows > first, 1.0 + r, 1.0)
    close = 100.0 * np.cumprod(growth, axis=0)
    del growth, r
    open_ = np.empty_like(close)
    open_[0] = 100.0
    open_[1:] = close[:-1]
    open_ *= np.exp(0.3 * s * rng.standard_normal((t_days, n)))
    high = np.maximum(open_, close) * np.exp(0.5 * s * np.abs(rng.standard_normal((t_days, n))))
    low = np.minimum(open_, close) * np.exp(-0.5 * s * np.abs(rng.standard_normal((t_days, n))))
    volume = np.rint(volume_level * np.exp(0.4 * rng.standard_normal((t_days, n)) + 0.25 * np.abs(shocks)))
    np.maximum(volume, 1.0, out=volume)
    del shocks
    for values in (open_, high, low, close, volume):
        values[~alive] = np.nan
    panel = Panel(dates, names, open_, high, low, close, volume)
    return SyntheticPanel(panel, expected_excess, planted, market, betas, s * math.sqrt(TRADING_DAYS), params)


def to_bars(panel: Panel) -> dict[str, list[Bar]]:
    """Each symbol's bars (the days with a close), oldest first, as `stockpred.market.prices.Bar`: the
    input of `panel_from_bars` or of a CSV writer. Volume is rounded to an integer; a day with a
    close but a missing open, high, low or volume raises ValueError. A day on which no symbol has a
    bar appears in no Bar, so `panel_from_bars(to_bars(p))` leaves it out of its calendar."""
    from stockpred.market.prices import Bar

    dates = panel.dates.astype(object)  # datetime.date objects
    fields = (panel.open, panel.high, panel.low, panel.close, panel.volume)
    out: dict[str, list[Bar]] = {}
    for column, symbol in enumerate(panel.symbols):
        rows = np.flatnonzero(~np.isnan(panel.close[:, column]))
        o, h, lo, c, v = (f[rows, column] for f in fields)
        if np.isnan(o).any() or np.isnan(h).any() or np.isnan(lo).any() or np.isnan(v).any():
            raise ValueError(f"to_bars: {symbol} has a close without open, high, low or volume")
        out[symbol] = list(map(Bar, dates[rows].tolist(), o.tolist(), h.tolist(), lo.tolist(), c.tolist(),
                               np.rint(v).astype(np.int64).tolist()))
    return out


def _garch_market(innovations: np.ndarray, daily_vol: float) -> np.ndarray:
    """m[t] = sqrt(h[t]) n[t], h[t+1] = w + a m[t]^2 + b h[t], started at the unconditional variance."""
    variance = daily_vol**2
    omega = variance * (1.0 - GARCH_ALPHA - GARCH_BETA)
    h = variance
    out = np.empty(innovations.size)
    for t, shock in enumerate(innovations.tolist()):
        out[t] = m = math.sqrt(h) * shock
        h = omega + GARCH_ALPHA * m * m + GARCH_BETA * h
    return out


def _zscore(x: np.ndarray) -> np.ndarray:
    sd = x.std()
    return (x - x.mean()) / sd if sd > 0 else np.zeros_like(x)


def _plant(r: np.ndarray, has_return: np.ndarray, first: np.ndarray, last: np.ndarray,
           reversal: float, momentum: float) -> np.ndarray:
    """Add the planted terms to the base returns `r` in place, day by day (each day's signal uses
    the returns already planted before it), floor the returns, and return the planted terms.
    `reversal` and `momentum` here are already multiplied by the common daily scale S."""
    t_days, n = r.shape
    planted = np.zeros_like(r)
    np.maximum(r[0], RETURN_FLOOR, out=r[0])
    # csum[j] = sum of the panel's returns on days before j (missing ones count as 0).
    csum = np.zeros((t_days + 1, n)) if momentum else None
    if csum is not None:
        csum[1] = np.where(has_return[0], r[0], 0.0)
    for t in range(1, t_days):
        term = planted[t]
        if reversal:
            ok = has_return[t - 1]
            if np.count_nonzero(ok) >= 2:
                term[ok] -= reversal * _zscore(r[t - 1, ok])
        if csum is not None and t >= MOMENTUM_FIRST + 1:
            ok = (first <= t - MOMENTUM_FIRST - 1) & (last >= t - 1)
            if np.count_nonzero(ok) >= 2:
                window = csum[t - MOMENTUM_LAST + 1, ok] - csum[t - MOMENTUM_FIRST, ok]
                term[ok] += momentum * _zscore(window)
        r[t] += term
        np.maximum(r[t], RETURN_FLOOR, out=r[t])
        if csum is not None:
            csum[t + 1] = csum[t] + np.where(has_return[t], r[t], 0.0)
    return planted
