"""stockml.synthetic: seeded, well-formed panels; listings, delistings and gaps as asked; no
cross-sectional predictability unless planted, and planted reversal and momentum measured by a
daily rank IC at the strength the generator's own truth implies; 500 x 5040 generated and aligned."""

import functools
import math
import time

import numpy as np
import pytest

from stockml.panel import panel_from_bars
from stockml.synthetic import (
    MOMENTUM_FIRST,
    MOMENTUM_LAST,
    TAIL_DF,
    TRADING_DAYS,
    SyntheticPanel,
    synthetic_panel,
    to_bars,
)

FIELDS = ("open", "high", "low", "close", "volume")


@functools.cache
def universe(**kwargs: float) -> SyntheticPanel:
    """200 stocks over ten years. Without an effect the rank ICs' t-statistics over seeds 0-11 had
    mean -0.2 and -0.1, sd 0.7 and 1.0 (reversal, momentum signal): |t| < 2 fails for about one
    seed in twenty by design, and seed 3 (t +0.7 and -0.0) is not one of them."""
    return synthetic_panel(200, 2520, seed=3, **kwargs)


def ranks(x: np.ndarray) -> np.ndarray:
    out = np.empty(x.size)
    out[np.argsort(x, kind="stable")] = np.arange(x.size)
    return out


def daily_rank_ic(signal: np.ndarray, outcome: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row's signal with that row's outcome, over the symbols having
    both, for every row with at least 20 such symbols."""
    ics = []
    for a, b in zip(signal, outcome, strict=True):
        ok = np.isfinite(a) & np.isfinite(b)
        if np.count_nonzero(ok) >= 20:
            ics.append(np.corrcoef(ranks(a[ok]), ranks(b[ok]))[0, 1])
    return np.array(ics)


def t_stat(ics: np.ndarray) -> float:
    return float(ics.mean() / ics.std(ddof=1) * math.sqrt(ics.size))


def shock_density(x: np.ndarray, fat_tails: bool) -> np.ndarray:
    """Density of the generator's unit-variance idiosyncratic shock e: Student-t(5) * sqrt(3/5),
    or the standard normal."""
    if not fat_tails:
        return np.exp(-x * x / 2) / math.sqrt(2 * math.pi)
    nu, scale = TAIL_DF, math.sqrt((TAIL_DF - 2) / TAIL_DF)
    k = math.exp(math.lgamma((nu + 1) / 2) - math.lgamma(nu / 2)) / math.sqrt(nu * math.pi)
    return k * (1 + (x / scale) ** 2 / nu) ** (-(nu + 1) / 2) / scale


def implied_rank_ic(synthetic: SyntheticPanel) -> float:
    """The mean daily rank IC that the planted truth implies for a signal that ranks like it, from
    theory (a first-order expansion in the small planted effect), never from a measured correlation.

    On day t let e_i = expected_excess[t-1, i] and r_i = e_i + n_i, the noise n_i = s_i x_i with
    density f_i (the stock's idiosyncratic vol times the generator's shock density). Spearman's rho
    is 12 Cov(U_i, F(r_i)), U_i the centred rank of e_i and F the cross-sectional distribution of r.
    To first order in e, F(r_i) = F_N(n_i) + e_i f_N(n_i) with F_N, f_N the cross-section's noise
    distribution and density, and n_i is independent of U_i, so

        rho_t = 12 mean_i(U_i e_i w_i),    w_i = E[f_N(n_i)] = integral of f_N f_i.

    This keeps what a Gaussian formula would miss (fat tails and mixed vols make ranks see more
    than a correlation of values does: about 10% more here) and leaves out the market factor's
    spread, beta_i m[t], which the truth treats as noise too (about 1-2% of the noise variance):
    so the theory runs slightly high. Over seeds 0-11 measured / implied was 0.92 to 1.04. Both the
    reversal signal r[t-1] and the momentum sum rank exactly like expected_excess[t-1] (it is linear
    in their z-scores, one common scale), so this is what their measured rank IC should be."""
    vols = synthetic.idio_vols / math.sqrt(TRADING_DAYS)
    grid = np.linspace(-60 * vols.max(), 60 * vols.max(), 12001)
    density = shock_density(grid / vols[:, None], synthetic.params["fat_tails"]) / vols[:, None]
    weight = (density * density.mean(axis=0)).sum(axis=1) * (grid[1] - grid[0])
    r = synthetic.panel.returns()
    values = []
    for e, nxt in zip(synthetic.expected_excess[:-1], r[1:], strict=True):
        ok = np.isfinite(e) & np.isfinite(nxt)
        n = np.count_nonzero(ok)
        if n >= 20 and e[ok].any():  # days with a planted effect (momentum: from t = 253)
            centred = e[ok] - e[ok].mean()
            u = (ranks(centred) - (n - 1) / 2) / n
            values.append(12 * np.mean(u * centred * weight[ok]))
    return float(np.mean(values))


def momentum_signal(synthetic: SyntheticPanel) -> np.ndarray:
    """Row t: the momentum signal planted on day t, recomputed from the panel alone: the sum of
    the returns t-252 .. t-21 (missing ones as 0) of the stocks with a first bar on or before t-253."""
    panel = synthetic.panel
    r = np.nan_to_num(panel.returns(), nan=0.0)
    csum = np.vstack([np.zeros(r.shape[1]), np.cumsum(r, axis=0)])
    first = np.argmax(panel.has_bar, axis=0)
    days = np.arange(r.shape[0])[:, None]
    columns = np.arange(r.shape[1])
    window = (csum[np.clip(days - MOMENTUM_LAST + 1, 0, None), columns]
              - csum[np.clip(days - MOMENTUM_FIRST, 0, None), columns])
    return np.where(first <= days - MOMENTUM_FIRST - 1, window, np.nan)


def test_same_seed_same_panel_other_seed_other_panel() -> None:
    a, b = (synthetic_panel(30, 400, seed=5, reversal=0.05, listings=0.2, delistings=0.2) for _ in range(2))
    c = synthetic_panel(30, 400, seed=6, reversal=0.05, listings=0.2, delistings=0.2)
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(a.panel, name), getattr(b.panel, name), err_msg=name)
    np.testing.assert_array_equal(a.expected_excess, b.expected_excess)
    assert not np.array_equal(a.panel.close, c.panel.close, equal_nan=True)


def test_shapes_calendar_and_truth() -> None:
    s = synthetic_panel(25, 300, start="2010-01-01", seed=1)
    p = s.panel
    assert p.shape == (300, 25) and len(p.symbols) == len(set(p.symbols)) == 25
    assert p.dates[0] == np.datetime64("2010-01-01") and np.is_busday(p.dates).all()
    for name in FIELDS:
        assert getattr(p, name).shape == (300, 25) and getattr(p, name).dtype == np.float64
    assert s.expected_excess.shape == s.planted.shape == (300, 25)
    assert s.market.shape == (300,) and s.betas.shape == s.idio_vols.shape == (25,)
    assert ((s.betas >= 0.2) & (s.betas <= 2.5)).all()
    assert s.params["symbols"] == 25 and s.params["reversal"] == 0.0
    # With nothing planted there is nothing to expect beyond the cross-sectional mean.
    defined = np.isfinite(s.expected_excess)
    assert defined.any() and (s.expected_excess[defined] == 0).all() and (s.planted == 0).all()
    # expected_excess[t] is defined exactly where the panel has the return of day t+1.
    np.testing.assert_array_equal(defined[:-1], np.isfinite(p.returns()[1:]))
    assert not defined[-1].any()


def test_listings_delistings_and_gaps_as_asked() -> None:
    p = synthetic_panel(200, 1000, seed=2, listings=0.2, delistings=0.1, gaps=0.002).panel
    listed, has = p.listed, p.has_bar
    first = np.argmax(listed, axis=0)
    last = p.shape[0] - 1 - np.argmax(listed[::-1], axis=0)
    assert np.count_nonzero(first > 0) == 40
    assert np.count_nonzero(last < p.shape[0] - 1) == 20
    assert (has[first, np.arange(200)]).all() and (has[last, np.arange(200)]).all()
    gap = listed & ~has
    rate = gap.sum() / listed.sum()
    print(f"gap rate {rate:.5f} (asked 0.002)")
    assert 0.001 < rate < 0.003
    assert not (gap[1:] & gap[:-1]).any()  # one-day gaps only
    for name in FIELDS:  # a bar is all five fields or none
        np.testing.assert_array_equal(np.isfinite(getattr(p, name)), has, err_msg=name)


def test_bars_are_consistent_wherever_listed() -> None:
    p = synthetic_panel(100, 1500, seed=4, reversal=0.05, listings=0.3, delistings=0.3).panel
    has = p.has_bar
    o, h, lo, c, v = (getattr(p, name)[has] for name in FIELDS)
    assert (h >= np.maximum(o, c)).all()
    assert (np.maximum(o, c) >= np.minimum(o, c)).all()
    assert (np.minimum(o, c) >= lo).all() and (lo > 0).all()
    assert (v >= 1).all() and (v == np.round(v)).all()
    first = np.argmax(has, axis=0)
    np.testing.assert_array_equal(p.close[first, np.arange(100)], 100.0)
    r = p.returns()[has]
    assert np.nanmin(r) > -0.9 and 0.005 < np.nanstd(r) < 0.05


def test_no_planted_effect_no_cross_sectional_predictability() -> None:
    s = universe()
    r = s.panel.returns()
    reversal_ics = daily_rank_ic(r[:-1], r[1:])
    momentum_ics = daily_rank_ic(momentum_signal(s), r)
    print(f"no effect: reversal IC {reversal_ics.mean():+.4f} (t {t_stat(reversal_ics):+.2f}), "
          f"momentum IC {momentum_ics.mean():+.4f} (t {t_stat(momentum_ics):+.2f})")
    assert reversal_ics.size > 2400 and momentum_ics.size > 2100
    assert abs(t_stat(reversal_ics)) < 2 and abs(t_stat(momentum_ics)) < 2


def test_planted_reversal_is_measured_at_its_implied_strength() -> None:
    s = universe(reversal=0.05)
    r = s.panel.returns()
    ics = daily_rank_ic(r[:-1], r[1:])
    implied = -implied_rank_ic(s)
    print(f"reversal 0.05: measured IC {ics.mean():+.4f} (t {t_stat(ics):+.1f}), implied {implied:+.4f}")
    assert -0.07 < implied < -0.03
    assert abs(ics.mean() - implied) < 0.2 * abs(implied)
    # The truth ranks each day exactly opposite to that day's return: linear in its z-score.
    rank_truth = daily_rank_ic(s.expected_excess, r)
    np.testing.assert_allclose(rank_truth, -1.0, atol=1e-12)


def test_planted_momentum_is_measured_at_its_implied_strength() -> None:
    s = universe(momentum=0.05)
    r = s.panel.returns()
    signal = momentum_signal(s)
    ics = daily_rank_ic(signal, r)
    implied = implied_rank_ic(s)
    print(f"momentum 0.05: measured IC {ics.mean():+.4f} (t {t_stat(ics):+.1f}), implied {implied:+.4f}")
    assert 0.03 < implied < 0.07
    assert abs(ics.mean() - implied) < 0.2 * abs(implied)
    # The panel alone recovers the generator's signal: same ranking as its truth every day.
    np.testing.assert_allclose(daily_rank_ic(signal[1:], s.expected_excess[:-1]), 1.0, atol=1e-12)


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="listings"):
        synthetic_panel(10, 100, listings=1.5)
    with pytest.raises(ValueError, match="at least 2 symbols"):
        synthetic_panel(1, 100)


def test_500_symbols_by_5040_days_generate_and_align() -> None:
    symbols, days = 500, 5040
    t0 = time.perf_counter()
    s = synthetic_panel(symbols, days, seed=0, reversal=0.05, momentum=0.02, listings=0.1, delistings=0.1)
    t1 = time.perf_counter()
    bars = to_bars(s.panel)
    t2 = time.perf_counter()
    aligned = panel_from_bars(bars)
    t3 = time.perf_counter()
    count = sum(map(len, bars.values()))
    print(f"{symbols} x {days}: generate {t1 - t0:.2f} s, to_bars {t2 - t1:.2f} s ({count:,} bars), "
          f"panel_from_bars {t3 - t2:.2f} s, panel {aligned.memory_bytes / 2**20:.1f} MiB")
    assert aligned.memory_bytes == s.panel.memory_bytes == days * 8 + 5 * days * symbols * 8
    assert aligned.shape == (days, symbols)
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(aligned, name), getattr(s.panel, name), err_msg=name)
