"""Cross-sectional features and labels for ranking a universe of stocks each day, with numpy only.

In the spirit of Microsoft Qlib's Alpha158 set-up: every symbol gets the same features from its own
price and volume history, the features are normalised across the universe day by day, and a model
is judged by its daily rank IC (Spearman correlation between score and realised excess return).

Features (columns of `build_cross_section`, in `FEATURE_NAMES` order; "return" is a daily log
return r[t] = log(close[t] / close[t-1]); volatilities are daily, not annualised):

- `ret_1`, `ret_5`, `ret_20`: log(close[t] / close[t-k]); short-term reversal over a day, a week
  (Lehmann 1990) and a month (Jegadeesh 1990).
- `ret_60`, `ret_120`, `ret_250`: the same over 3, 6 and 12 months; the formation periods of
  Jegadeesh and Titman (1993) momentum.
- `mom_12_1`: log(close[t-21] / close[t-250]), the 12-month return skipping the last month, so that
  momentum is not mixed with the one-month reversal (Jegadeesh and Titman 1993; Fama-French UMD).
- `vol_20`, `vol_60`: sample standard deviation of daily returns over 20 and 60 days; the low
  volatility anomaly (Ang, Hodrick, Xing and Zhang 2006; Baker, Bradley and Wurgler 2011).
- `downvol_60`: sqrt(mean(min(r, 0)^2)) over 60 days, the downside semi-deviation about zero;
  downside risk is priced apart from total risk (Ang, Chen and Xing 2006).
- `volume_shock_60`: log((volume[t] + 1) / (mean volume of the 60 days ending at t + 1)); unusually
  high volume precedes higher returns (Gervais, Kaniel and Mingelgrin 2001).
- `dist_high_250`: log(close[t] / highest close of the 250 days ending at t), <= 0; nearness to the
  52-week high predicts returns (George and Hwang 2004).
- `dist_low_250`: log(close[t] / lowest close of those 250 days), >= 0; the other anchor of the same
  52-week range (George and Hwang 2004; Alpha158's MIN).
- `beta_120`: OLS slope of the symbol's daily returns on the market's over 120 days, the market being
  the equal-weight mean of the universe's daily log returns that day (the symbol included); low beta
  earns more than the CAPM says (Black, Jensen and Scholes 1972; Frazzini and Pedersen 2014).
- `idio_vol_120`: standard deviation of the residuals of that regression (n - 2 degrees of freedom);
  the idiosyncratic volatility puzzle (Ang, Hodrick, Xing and Zhang 2006, there against Fama-French).
- `max_ret_20`: the largest daily return of the last 20 days; lottery-like stocks underperform
  (Bali, Cakici and Whitelaw 2011).
- `dollar_volume_20`: log(1 + mean of close * volume over 20 days); liquidity and size, dollar volume
  predicting lower returns (Brennan, Chordia and Subrahmanyam 1998).

No look-ahead: every feature on day t is computed from bars dated on or before t only (prefix sums,
backward windows and day-t cross-sections), so truncating the panel after day t, or changing any
later bar, leaves row t bit for bit the same. Only `labels` looks forward, by construction.

Missing data, never bridged: a day without a close (NaN, or not positive) makes the return into it
and the return out of it NaN; prices are never forward-filled into returns. A window statistic needs
at least `min_coverage` (default 80%) of its window present, else NaN; a k-day return also needs both
end closes, and `mom_12_1` both of its closes and 80% of the 229 returns between them. A symbol with
no close on day t has every feature NaN on day t (it cannot be traded that day). Rows before
`WARMUP_ROWS` lack the longest windows.

Memory: (T, N, F) float64 is 8 * T * N * F bytes, e.g. 500 symbols x 5,000 days x 17 features is
340 MB; `build_cross_section(panel, dtype=np.float32)` halves that (computed in float64, stored in
float32). `normalise` keeps its input's floating dtype and works one feature at a time.

Speed: the features are computed SYMBOL_BLOCK symbols at a time, each step vectorised across the
block. On 500 symbols x 5,040 days that is 2-4x faster than the whole panel at once (whose 20 MB
arrays leave the cache at every step) and about as fast as one symbol at a time (0.8-1.6x over
three runs of bench/universe.py): the per-step overhead is gone, the cache kept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from stockml.panel import Panel

RETURN_WINDOWS = (1, 5, 20, 60, 120, 250)
MOMENTUM_FROM, MOMENTUM_SKIP = 250, 21
VOL_WINDOWS = (20, 60)
DOWNVOL_WINDOW = 60
VOLUME_WINDOW = 60
RANGE_WINDOW = 250
BETA_WINDOW = 120
MAX_RET_WINDOW = 20
DOLLAR_VOLUME_WINDOW = 20
MIN_COVERAGE = 0.8
# Symbols computed together: whole-panel arrays (5040 days x 500 symbols, 20 MB each) stream
# through memory at every step, blocks of this many stay in cache (bench/universe.py measures it).
SYMBOL_BLOCK = 16
# The first row on which every feature can have a value: ret_250 and mom_12_1 need close[t-250].
WARMUP_ROWS = max(RETURN_WINDOWS)

MIN_NORMALISE = 5
MIN_IC_PAIRS = 10
MAD_SCALE = 1.4826           # MAD to standard deviation under normality
MEAN_AD_SCALE = 1.2533141    # sqrt(pi / 2): mean absolute deviation to standard deviation
Z_CLIP = 3.0

FEATURE_NAMES: tuple[str, ...] = (
    *(f"ret_{n}" for n in RETURN_WINDOWS),
    "mom_12_1",
    *(f"vol_{n}" for n in VOL_WINDOWS),
    f"downvol_{DOWNVOL_WINDOW}",
    f"volume_shock_{VOLUME_WINDOW}",
    f"dist_high_{RANGE_WINDOW}",
    f"dist_low_{RANGE_WINDOW}",
    f"beta_{BETA_WINDOW}",
    f"idio_vol_{BETA_WINDOW}",
    f"max_ret_{MAX_RET_WINDOW}",
    f"dollar_volume_{DOLLAR_VOLUME_WINDOW}",
)

Method = Literal["rank", "robust_z"]


# ----------------------------------------------------------------------------- window primitives


def _min_count(n: int, coverage: float) -> int:
    """Values a window of n needs: ceil(coverage * n), at least 1 (the 1e-9 absorbs 0.8 * 5 = 4.000...)."""
    return max(1, int(np.ceil(coverage * n - 1e-9)))


def _lag(x: np.ndarray, k: int) -> np.ndarray:
    """x[t - k] on row t; NaN on the first k rows."""
    out = np.full(x.shape, np.nan)
    if k < len(x):
        out[k:] = x[: len(x) - k] if k else x
    return out


def _rolling_sum(x: np.ndarray, n: int) -> np.ndarray:
    """Sum of rows t-n+1..t of x (no NaN in x) from a prefix sum; NaN on the first n-1 rows.

    A prefix sum only looks back, so a row's value does not depend on later rows.
    """
    if n > len(x):
        return np.full(x.shape, np.nan)
    c = np.cumsum(x, axis=0, dtype=np.float64)
    out = np.empty_like(c)
    out[: n - 1] = np.nan
    out[n - 1] = c[n - 1]
    np.subtract(c[n:], c[:-n], out=out[n:])
    return out


def _masked(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x with NaN as 0, presence mask as float)."""
    present = np.isfinite(x)
    return np.where(present, x, 0.0), present.astype(np.float64)


def _rolling_extreme(x: np.ndarray, n: int, op: np.ufunc) -> np.ndarray:
    """op (np.fmax or np.fmin, which skip NaN) over rows t-n+1..t; NaN on the first n-1 rows.

    Doubling: after the loop m[t] covers the last `span` rows (the largest power of two <= n), and
    the window of n is the union of m[t] and m[t - n + span]: log2(n) whole-array steps.
    """
    out = np.full(x.shape, np.nan)
    if n > len(x):
        return out
    m, span = x.copy(), 1
    while 2 * span <= n:
        m[span:] = op(m[span:], m[:-span])
        span *= 2
    out[n - 1:] = op(m[n - 1:], m[span - 1: len(x) - n + span])
    return out


def _window_mean_std(r0: np.ndarray, present: np.ndarray, n: int, need: int) -> tuple[np.ndarray, ...]:
    """Count, mean and sample standard deviation of the present values in each window of n."""
    count = _rolling_sum(present, n)
    s1, s2 = _rolling_sum(r0, n), _rolling_sum(r0 * r0, n)
    ok = count >= max(need, 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = s1 / count
        var = np.maximum(s2 - s1 * mean, 0.0) / (count - 1)
    return count, np.where(ok, mean, np.nan), np.where(ok, np.sqrt(var), np.nan)


# ----------------------------------------------------------------------------- features


def _capm(m: np.ndarray, r0: np.ndarray, r_present: np.ndarray, n: int,
          need: int) -> tuple[np.ndarray, np.ndarray]:
    """Beta and residual standard deviation of each symbol's returns regressed on the market's
    (`m`, the equal-weight universe's) over the last n days where both exist (at least `need`)."""
    pair = r_present * np.isfinite(m)[:, None]
    x = np.where(pair > 0, m[:, None], 0.0)
    y = r0 * pair
    count = _rolling_sum(pair, n)
    sx, sy = _rolling_sum(x, n), _rolling_sum(y, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        cxx = _rolling_sum(x * x, n) - sx * sx / count
        cxy = _rolling_sum(x * y, n) - sx * sy / count
        del x
        cyy = _rolling_sum(y * y, n) - sy * sy / count
        del y, sx, sy
        ok = (count >= need) & (cxx > 0)
        beta = np.where(ok, cxy / cxx, np.nan)
        resid = np.maximum(cyy - beta * cxy, 0.0) / (count - 2)
    return beta, np.where(ok, np.sqrt(resid), np.nan)


def _check(panel: Panel) -> tuple[int, int]:
    t, n = len(panel.dates), len(panel.symbols)
    for name in ("open", "high", "low", "close", "volume"):
        if np.shape(getattr(panel, name)) != (t, n):
            raise ValueError(f"panel.{name} has shape {np.shape(getattr(panel, name))}, expected {(t, n)}")
    return t, n


def log_returns(close: np.ndarray) -> np.ndarray:
    """Daily log returns (T, N): log(close[t] / close[t-1]), NaN on row 0 and next to any missing close."""
    close = np.asarray(close, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_close = np.where(close > 0, np.log(close), np.nan)
    out = np.full(close.shape, np.nan)
    out[1:] = log_close[1:] - log_close[:-1]
    return out


def market_returns(returns: np.ndarray) -> np.ndarray:
    """Equal-weight mean of the day's daily returns over the symbols that have one (T,); NaN if none."""
    r0, present = _masked(returns)
    count = present.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(count > 0, r0.sum(axis=1) / count, np.nan)


def build_cross_section(panel: Panel, *, dtype: type | np.dtype = np.float64,
                        min_coverage: float = MIN_COVERAGE, block: int = SYMBOL_BLOCK) -> np.ndarray:
    """Raw features (T, N, len(FEATURE_NAMES)), column j being FEATURE_NAMES[j] (see module docstring).

    Computed in float64, vectorised across `block` symbols at a time (the market's return, which
    beta needs, from all of them first); `dtype=np.float32` halves the stored result.
    """
    t_len, n_sym = _check(panel)
    close = np.asarray(panel.close, dtype=np.float64)
    volume = np.asarray(panel.volume, dtype=np.float64)
    market = market_returns(log_returns(close))
    out = np.empty((t_len, n_sym, len(FEATURE_NAMES)), dtype=dtype)
    for start in range(0, n_sym, max(1, block)):
        part = slice(start, start + max(1, block))
        _features(close[:, part], volume[:, part], market, out[:, part], min_coverage)
    return out


def _features(close: np.ndarray, volume: np.ndarray, market: np.ndarray, out: np.ndarray,
              min_coverage: float) -> None:
    """Writes the raw features of the symbols in `close`'s columns into `out` (T, n, features)."""
    bar = np.isfinite(close) & (close > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_close = np.where(bar, np.log(close), np.nan)
    r = log_returns(close)
    r0, r_present = _masked(r)
    columns = iter(range(len(FEATURE_NAMES)))

    def put(values: np.ndarray) -> None:
        out[:, :, next(columns)] = values

    def need(n: int) -> int:
        return _min_count(n, min_coverage)

    # k-day returns: both end closes, and enough of the k daily returns between them.
    for k in RETURN_WINDOWS:
        covered = _rolling_sum(r_present, k) >= need(k)
        put(np.where(covered, log_close - _lag(log_close, k), np.nan))

    span = MOMENTUM_FROM - MOMENTUM_SKIP
    covered = _lag(_rolling_sum(r_present, span), MOMENTUM_SKIP) >= need(span)
    put(np.where(covered, _lag(log_close, MOMENTUM_SKIP) - _lag(log_close, MOMENTUM_FROM), np.nan))

    for n in VOL_WINDOWS:
        put(_window_mean_std(r0, r_present, n, need(n))[2])

    down = np.minimum(r0, 0.0)
    count = _rolling_sum(r_present, DOWNVOL_WINDOW)
    with np.errstate(divide="ignore", invalid="ignore"):
        put(np.where(count >= need(DOWNVOL_WINDOW),
                     np.sqrt(_rolling_sum(down * down, DOWNVOL_WINDOW) / count), np.nan))

    v0, v_present = _masked(np.where(volume >= 0, volume, np.nan))
    count = _rolling_sum(v_present, VOLUME_WINDOW)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_volume = _rolling_sum(v0, VOLUME_WINDOW) / count
        shock = np.log((volume + 1.0) / (mean_volume + 1.0))
    put(np.where((count >= need(VOLUME_WINDOW)) & (v_present > 0), shock, np.nan))

    covered = _rolling_sum(bar.astype(np.float64), RANGE_WINDOW) >= need(RANGE_WINDOW)
    put(np.where(covered, log_close - _rolling_extreme(log_close, RANGE_WINDOW, np.fmax), np.nan))
    put(np.where(covered, log_close - _rolling_extreme(log_close, RANGE_WINDOW, np.fmin), np.nan))

    beta, idio_vol = _capm(market, r0, r_present, BETA_WINDOW, max(need(BETA_WINDOW), 3))
    put(beta)
    put(idio_vol)
    del beta, idio_vol

    covered = _rolling_sum(r_present, MAX_RET_WINDOW) >= need(MAX_RET_WINDOW)
    put(np.where(covered, _rolling_extreme(r, MAX_RET_WINDOW, np.fmax), np.nan))

    dollars = np.where(bar & (v_present > 0), close * volume, np.nan)
    d0, d_present = _masked(dollars)
    count = _rolling_sum(d_present, DOLLAR_VOLUME_WINDOW)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_dollars = _rolling_sum(d0, DOLLAR_VOLUME_WINDOW) / count
    put(np.where(count >= need(DOLLAR_VOLUME_WINDOW), np.log1p(mean_dollars), np.nan))

    assert next(columns, None) is None, "a feature was not written"
    out[~bar] = np.nan


# ----------------------------------------------------------------------------- normalisation


def average_ranks(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of a 2-D array: ranks 1..count of the non-NaN values, ties sharing the average of their
    ranks, NaN where x is NaN; and count (rows,). One sort for all rows."""
    x = np.asarray(x, dtype=np.float64)
    cols = x.shape[1]
    order = np.argsort(x, axis=1, kind="stable")          # NaN sort last
    s = np.take_along_axis(x, order, axis=1)
    pos = np.arange(cols)
    starts = np.ones(s.shape, dtype=bool)
    starts[:, 1:] = s[:, 1:] != s[:, :-1]                 # NaN != NaN: each NaN its own run
    ends = np.ones(s.shape, dtype=bool)
    ends[:, :-1] = starts[:, 1:]
    first = np.maximum.accumulate(np.where(starts, pos, 0), axis=1)
    last = np.minimum.accumulate(np.where(ends, pos, cols - 1)[:, ::-1], axis=1)[:, ::-1]
    valid = ~np.isnan(s)
    ranks = np.empty(x.shape)
    np.put_along_axis(ranks, order, np.where(valid, (first + last) / 2 + 1, np.nan), axis=1)
    return ranks, valid.sum(axis=1)


def _rank_rows(x: np.ndarray, min_count: int) -> np.ndarray:
    ranks, count = average_ranks(x)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (ranks - 0.5) / count[:, None] - 0.5
    out[count < min_count] = np.nan
    return out


def _row_median(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median of each row's non-NaN values (NaN for an empty row), and the counts."""
    s = np.sort(x, axis=1)                                 # NaN sort last
    count = np.sum(~np.isnan(x), axis=1)
    lo = np.maximum((count - 1) // 2, 0)[:, None]
    hi = np.maximum(count // 2 - (count == 0), 0)[:, None]
    median = (np.take_along_axis(s, lo, axis=1) + np.take_along_axis(s, hi, axis=1))[:, 0] / 2
    return np.where(count > 0, median, np.nan), count


def _robust_z_rows(x: np.ndarray, min_count: int) -> np.ndarray:
    median, count = _row_median(x)
    dev = np.abs(x - median[:, None])
    mad, _ = _row_median(dev)
    with np.errstate(divide="ignore", invalid="ignore"):
        # More than half the values equal: MAD is 0, fall back on the mean absolute deviation.
        mean_ad = np.nansum(dev, axis=1) / count
        scale = np.where(mad > 0, MAD_SCALE * mad, MEAN_AD_SCALE * mean_ad)
        z = (x - median[:, None]) / scale[:, None]
    z = np.where((scale > 0)[:, None], z, np.where(np.isnan(x), np.nan, 0.0))
    z = np.clip(z, -Z_CLIP, Z_CLIP)
    z[count < min_count] = np.nan
    return z


def normalise(features: np.ndarray, method: Method = "rank", *, min_count: int = MIN_NORMALISE) -> np.ndarray:
    """Normalise across symbols (axis 1) day by day (axis 0), each trailing column on its own.

    `features` is (T, N) or (T, N, F...). "rank": (rank - 0.5) / count - 0.5 over the symbols with a
    value, ties averaged, so in (-0.5, 0.5) with mean 0. "robust_z": (x - median) / (1.4826 * MAD),
    clipped to [-3, 3] (1.2533 * mean absolute deviation when MAD is 0; 0 when all values are equal).
    NaN stays NaN; a day with fewer than `min_count` values is all NaN. Keeps a floating input's dtype.
    """
    x = np.asarray(features)
    if x.ndim < 2:
        raise ValueError(f"features must be (T, N, ...), got shape {x.shape}")
    if method == "rank":
        rows = _rank_rows
    elif method == "robust_z":
        rows = _robust_z_rows
    else:
        raise ValueError(f"unknown method {method!r}: 'rank' or 'robust_z'")
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
    out = np.empty(x.shape, dtype=dtype)
    flat_in = x.reshape(x.shape[0], x.shape[1], -1)
    flat_out = out.reshape(x.shape[0], x.shape[1], -1)    # a view: `out` is contiguous
    for j in range(flat_in.shape[2]):
        flat_out[:, :, j] = rows(flat_in[:, :, j].astype(np.float64), min_count)
    return out


# ----------------------------------------------------------------------------- labels and IC


def labels(panel: Panel, horizon: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(excess, ranked), each (T, N): excess[t] is the simple return close[t] -> close[t + horizon]
    less that day's equal-weight mean of the same over the symbols that have one; ranked is its
    per-day `normalise(..., "rank")`. NaN unless every close t..t+horizon exists; last `horizon`
    rows NaN."""
    if int(horizon) != horizon or horizon < 1:
        raise ValueError(f"horizon must be a positive whole number of days, got {horizon!r}")
    horizon = int(horizon)
    _check(panel)
    close = np.asarray(panel.close, dtype=np.float64)
    bar = np.isfinite(close) & (close > 0)
    forward = np.full(close.shape, np.nan)
    if horizon < len(close):
        seen = np.zeros((len(close) + 1, close.shape[1]), dtype=np.int64)
        np.cumsum(bar, axis=0, out=seen[1:])
        complete = (seen[horizon + 1:] - seen[: len(close) - horizon]) == horizon + 1
        with np.errstate(divide="ignore", invalid="ignore"):
            forward[:-horizon] = np.where(complete, close[horizon:] / close[:-horizon] - 1.0, np.nan)
    mean = market_returns(forward)
    excess = forward - mean[:, None]
    return excess, normalise(excess, "rank")


def daily_rank_ic(score: np.ndarray, realised: np.ndarray, *, min_pairs: int = MIN_IC_PAIRS) -> np.ndarray:
    """Spearman correlation between score and realised across symbols, per day (T,), over the symbols
    with both values (ties averaged, as scipy.stats.spearmanr); NaN with fewer than `min_pairs` pairs
    or a constant side."""
    a = np.asarray(score, dtype=np.float64)
    b = np.asarray(realised, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"score and realised must be (T, N) alike, got {a.shape} and {b.shape}")
    pair = np.isfinite(a) & np.isfinite(b)
    ra, count = average_ranks(np.where(pair, a, np.nan))
    rb, _ = average_ranks(np.where(pair, b, np.nan))
    centre = (count[:, None] + 1) / 2                      # the mean of ranks 1..count, ties or not
    da = np.where(pair, ra - centre, 0.0)
    db = np.where(pair, rb - centre, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ic = np.einsum("ij,ij->i", da, db) / np.sqrt(
            np.einsum("ij,ij->i", da, da) * np.einsum("ij,ij->i", db, db))
    return np.where(count >= min_pairs, np.clip(ic, -1.0, 1.0), np.nan)
