"""stockml.cross_section: hand-checked feature values, a loop-by-loop reference on a panel with gaps,
no look-ahead, gaps never bridged, per-day normalisation, labels and the daily rank IC."""

from __future__ import annotations

import math
import time
import tracemalloc
from dataclasses import dataclass

import numpy as np
import pytest
from scipy import stats

from stockml.cross_section import (
    FEATURE_NAMES,
    WARMUP_ROWS,
    build_cross_section,
    daily_rank_ic,
    labels,
    normalise,
)

try:
    from stockml.panel import Panel
except ImportError:  # stockml/panel.py not written yet: the same type, as specified
    @dataclass(frozen=True, eq=False)
    class Panel:
        dates: np.ndarray
        symbols: tuple[str, ...]
        open: np.ndarray
        high: np.ndarray
        low: np.ndarray
        close: np.ndarray
        volume: np.ndarray

COL = {name: j for j, name in enumerate(FEATURE_NAMES)}


def make_panel(close: np.ndarray, volume: np.ndarray | None = None) -> Panel:
    close = np.asarray(close, dtype=float)
    t, n = close.shape
    if volume is None:
        volume = np.full((t, n), 1000.0)
    volume = np.where(np.isnan(close), np.nan, volume)
    dates = np.datetime64("2010-01-04") + np.arange(t)
    return Panel(dates=dates.astype("datetime64[D]"), symbols=tuple(f"S{i}" for i in range(n)),
                 open=close.copy(), high=close * 1.01, low=close * 0.99, close=close, volume=volume)


def truncated(panel: Panel, rows: int) -> Panel:
    return Panel(panel.dates[:rows], panel.symbols, panel.open[:rows], panel.high[:rows], panel.low[:rows],
                 panel.close[:rows], panel.volume[:rows])


def random_panel(seed: int, t: int = 320, n: int = 6, gaps: bool = True) -> Panel:
    rng = np.random.default_rng(seed)
    beta = rng.uniform(0.5, 1.5, n)
    market = rng.normal(0.0003, 0.01, t)
    r = beta * market[:, None] + rng.normal(0, 0.015, (t, n))
    close = 50 * np.exp(np.cumsum(r, axis=0))
    volume = rng.lognormal(10, 0.5, (t, n)).round()
    if gaps:
        close[rng.random((t, n)) < 0.03] = np.nan      # scattered missing bars
        close[100:107, 1] = np.nan                      # a week-long halt
        close[:40, 2] = np.nan                          # listed late
        volume[rng.random((t, n)) < 0.02] = 0.0         # bars that did not trade
    return make_panel(close, volume)


# ----------------------------------------------------------------------------- hand-checked values

G, ZIG_UP, ZIG_DOWN, D = 0.001, 0.02, -0.01, -0.0005
T_HAND = 300


@pytest.fixture(scope="module")
def hand():
    """UP: +0.1% a day; ZIG: +2%, -1% alternately (up on odd days); DOWN: -0.05% a day;
    LEV: UP + ZIG + DOWN, which is exactly twice the equal-weight market (m = (UP + ZIG + DOWN) / 2)."""
    days = np.arange(T_HAND)
    up = np.full(T_HAND, G)
    zig = np.where(days % 2 == 1, ZIG_UP, ZIG_DOWN)
    down = np.full(T_HAND, D)
    r = np.column_stack([up, zig, down, up + zig + down])
    r[0] = 0.0
    close = 100 * np.exp(np.cumsum(r, axis=0))
    volume = np.full(close.shape, 1000.0)
    volume[280, 0] = 4000.0
    panel = make_panel(close, volume)
    return panel, build_cross_section(panel)


def test_feature_names_and_shape(hand):
    panel, f = hand
    assert len(FEATURE_NAMES) == len(set(FEATURE_NAMES)) == 17
    assert f.shape == (T_HAND, 4, len(FEATURE_NAMES))
    assert f.dtype == np.float64
    assert np.isnan(f[: WARMUP_ROWS, :, COL["ret_250"]]).all()
    assert np.isfinite(f[WARMUP_ROWS:]).all()
    f32 = build_cross_section(panel, dtype=np.float32)
    assert f32.dtype == np.float32
    np.testing.assert_allclose(f32, f, rtol=1e-6, atol=1e-6)


def test_hand_checked_returns_and_momentum(hand):
    _, f = hand
    up, zig, down = 0, 1, 2
    t = 299                                                       # odd: ZIG was up today
    close_to = pytest.approx
    assert f[t, up, COL["ret_1"]] == close_to(G, abs=1e-12)
    assert f[t, up, COL["ret_5"]] == close_to(5 * G, abs=1e-12)
    assert f[t, up, COL["ret_20"]] == close_to(20 * G, abs=1e-12)
    assert f[t, up, COL["ret_250"]] == close_to(250 * G, abs=1e-12)
    assert f[t, up, COL["mom_12_1"]] == close_to(229 * G, abs=1e-12)   # close t-250 -> close t-21
    assert f[t, zig, COL["ret_1"]] == close_to(ZIG_UP, abs=1e-12)
    assert f[t - 1, zig, COL["ret_1"]] == close_to(ZIG_DOWN, abs=1e-12)
    assert f[t, zig, COL["ret_20"]] == close_to(10 * (ZIG_UP + ZIG_DOWN), abs=1e-12)
    assert f[t, down, COL["ret_60"]] == close_to(60 * D, abs=1e-12)
    assert f[t, down, COL["ret_120"]] == close_to(120 * D, abs=1e-12)
    assert f[t, zig, COL["max_ret_20"]] == close_to(ZIG_UP, abs=1e-12)
    assert f[t, up, COL["max_ret_20"]] == close_to(G, abs=1e-12)


def test_hand_checked_risk_and_range(hand):
    panel, f = hand
    up, zig, down, lev = 0, 1, 2, 3
    t = 299
    half_spread = (ZIG_UP - ZIG_DOWN) / 2                          # each return is the mean +- 1.5%
    assert f[t, zig, COL["vol_20"]] == pytest.approx(half_spread * math.sqrt(20 / 19), rel=1e-9)
    assert f[t, zig, COL["vol_60"]] == pytest.approx(half_spread * math.sqrt(60 / 59), rel=1e-9)
    assert f[t, up, COL["vol_20"]] == pytest.approx(0, abs=1e-8)
    assert f[t, zig, COL["downvol_60"]] == pytest.approx(abs(ZIG_DOWN) / math.sqrt(2), rel=1e-9)  # half down
    assert f[t, up, COL["downvol_60"]] == 0
    assert f[t, down, COL["downvol_60"]] == pytest.approx(abs(D), rel=1e-9)

    assert f[t, up, COL["dist_high_250"]] == 0                     # rising: today is the high
    assert f[t, up, COL["dist_low_250"]] == pytest.approx(249 * G, abs=1e-12)
    assert f[t, down, COL["dist_high_250"]] == pytest.approx(249 * D, abs=1e-12)
    assert f[t, down, COL["dist_low_250"]] == 0
    assert f[t, zig, COL["dist_high_250"]] == 0                    # up today: a new high
    assert f[t - 1, zig, COL["dist_high_250"]] == pytest.approx(ZIG_DOWN, abs=1e-12)

    assert f[t, lev, COL["beta_120"]] == pytest.approx(2.0, rel=1e-9)
    assert f[t, lev, COL["idio_vol_120"]] == pytest.approx(0, abs=1e-7)
    assert f[t, up, COL["beta_120"]] == pytest.approx(0, abs=1e-8)

    assert f[t - 1, down, COL["volume_shock_60"]] == pytest.approx(0, abs=1e-12)
    mean_volume = 1000 * 59 / 60 + 4000 / 60                     # the 4000-share day is in the window
    assert f[280, up, COL["volume_shock_60"]] == pytest.approx(math.log(4001 / (mean_volume + 1)))
    assert f[t, up, COL["volume_shock_60"]] == pytest.approx(math.log(1001 / (mean_volume + 1)))
    dollars = panel.close[t - 19: t + 1, up] * panel.volume[t - 19: t + 1, up]
    assert f[t, up, COL["dollar_volume_20"]] == pytest.approx(math.log1p(dollars.mean()), rel=1e-12)


# ----------------------------------------------------------------------------- loop-by-loop reference


def need(n: int) -> int:
    return -(-4 * n // 5)                                        # ceil(0.8 n) in integers


def reference_features(panel: Panel) -> np.ndarray:
    """Each feature from its definition, one symbol and one day at a time."""
    c, v = panel.close, panel.volume
    t_len, n_sym = c.shape
    r = np.full(c.shape, np.nan)
    for i in range(n_sym):
        for t in range(1, t_len):
            if np.isfinite(c[t, i]) and np.isfinite(c[t - 1, i]):
                r[t, i] = math.log(c[t, i] / c[t - 1, i])
    market = np.array([np.mean(row[np.isfinite(row)]) if np.isfinite(row).any() else np.nan for row in r])
    out = np.full((t_len, n_sym, len(FEATURE_NAMES)), np.nan)

    def window(x, t, n, lag=0):
        lo, hi = t - lag - n + 1, t - lag + 1
        return x[lo:hi] if lo >= 0 else None

    for i in range(n_sym):
        for t in range(t_len):
            if not np.isfinite(c[t, i]):
                continue
            row = {}
            for k in (1, 5, 20, 60, 120, 250):
                w = window(r[:, i], t, k)
                if t >= k and np.isfinite(c[t - k, i]) and np.isfinite(w).sum() >= need(k):
                    row[f"ret_{k}"] = math.log(c[t, i] / c[t - k, i])
            w = window(r[:, i], t, 229, lag=21)
            if t >= 250 and np.isfinite(c[t - 21, i]) and np.isfinite(c[t - 250, i]) \
                    and np.isfinite(w).sum() >= need(229):
                row["mom_12_1"] = math.log(c[t - 21, i] / c[t - 250, i])
            for n in (20, 60):
                w = window(r[:, i], t, n)
                if w is not None and np.isfinite(w).sum() >= need(n):
                    w = w[np.isfinite(w)]
                    row[f"vol_{n}"] = np.std(w, ddof=1)
                    if n == 60:
                        row["downvol_60"] = math.sqrt(np.mean(np.minimum(w, 0) ** 2))
            w = window(v[:, i], t, 60)
            if w is not None and np.isfinite(w).sum() >= need(60) and np.isfinite(v[t, i]):
                row["volume_shock_60"] = math.log((v[t, i] + 1) / (np.mean(w[np.isfinite(w)]) + 1))
            w = window(c[:, i], t, 250)
            if w is not None and np.isfinite(w).sum() >= need(250):
                row["dist_high_250"] = math.log(c[t, i] / np.nanmax(w))
                row["dist_low_250"] = math.log(c[t, i] / np.nanmin(w))
            w, wm = window(r[:, i], t, 120), window(market, t, 120)
            if w is not None:
                ok = np.isfinite(w) & np.isfinite(wm)
                if ok.sum() >= need(120):
                    slope, intercept = np.polyfit(wm[ok], w[ok], 1)
                    resid = w[ok] - (intercept + slope * wm[ok])
                    row["beta_120"] = slope
                    row["idio_vol_120"] = math.sqrt(np.sum(resid ** 2) / (ok.sum() - 2))
            w = window(r[:, i], t, 20)
            if w is not None and np.isfinite(w).sum() >= need(20):
                row["max_ret_20"] = np.nanmax(w)
            w = window(c[:, i] * v[:, i], t, 20)
            if w is not None and np.isfinite(w).sum() >= need(20):
                row["dollar_volume_20"] = math.log1p(np.nanmean(w))
            for name, value in row.items():
                out[t, i, COL[name]] = value
    return out


def test_matches_loop_reference_with_gaps():
    panel = random_panel(seed=7, t=300, n=5)
    got, want = build_cross_section(panel), reference_features(panel)
    for j, name in enumerate(FEATURE_NAMES):
        np.testing.assert_array_equal(np.isnan(got[:, :, j]), np.isnan(want[:, :, j]), err_msg=name)
        np.testing.assert_allclose(got[:, :, j], want[:, :, j], rtol=1e-8, atol=1e-11, err_msg=name)
        assert np.isfinite(want[-1, :, j]).sum() >= 3, name       # the comparison is not vacuous


@pytest.mark.parametrize("block", [1, 2, 5])
def test_blocks_of_symbols_give_the_whole_panel_features(block):
    """Computed a block of symbols at a time (for the cache), the features are those of the whole
    panel at once: beta still regresses on the market of every symbol, not of the block's."""
    panel = random_panel(seed=5, t=300, n=7)
    whole = build_cross_section(panel, block=7)
    np.testing.assert_allclose(build_cross_section(panel, block=block), whole, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(np.isnan(build_cross_section(panel, block=block)), np.isnan(whole))


# ----------------------------------------------------------------------------- no look-ahead


def test_no_look_ahead():
    panel = random_panel(seed=3, t=330)
    full = build_cross_section(panel)
    assert np.isfinite(full[-1]).any(axis=0).all()                 # every feature has values to compare
    rng = np.random.default_rng(11)
    for t in (0, 1, 4, 59, 119, 249, 250, 251, 280, 329):
        head = build_cross_section(truncated(panel, t + 1))
        np.testing.assert_array_equal(head, full[: t + 1], err_msg=f"t={t}")
        # Different later bars change nothing up to t.
        close, volume = panel.close.copy(), panel.volume.copy()
        close[t + 1:] *= rng.uniform(0.5, 2.0, close[t + 1:].shape)
        volume[t + 1:] *= 3
        changed = build_cross_section(make_panel(close, volume))
        np.testing.assert_array_equal(changed[: t + 1], full[: t + 1], err_msg=f"t={t}")


# ----------------------------------------------------------------------------- gaps


def test_gap_is_never_bridged():
    panel = random_panel(seed=5, t=260, n=6, gaps=False)
    close = panel.close.copy()
    close[200, 0] = np.nan                                         # one missing bar
    close[150:155, 1] = np.nan                                     # five missing bars
    f = build_cross_section(make_panel(close, panel.volume))
    ret = lambda name, t, i: f[t, i, COL[name]]                    # noqa: E731

    assert np.isnan(f[200, 0]).all()                               # nothing on a day without a bar
    assert np.isnan(ret("ret_1", 201, 0))
    assert np.isfinite(ret("ret_1", 199, 0)) and np.isfinite(ret("ret_1", 202, 0))
    assert all(np.isnan(ret("ret_5", t, 0)) for t in range(200, 206))
    assert np.isfinite(ret("ret_5", 199, 0)) and np.isfinite(ret("ret_5", 206, 0))
    # ret_20 keeps its endpoints (18 of 20 daily returns is enough); vol_20 leaves out both returns
    # touching the gap, and never uses the bridged log(close[201] / close[199]).
    assert ret("ret_20", 210, 0) == pytest.approx(math.log(close[210, 0] / close[190, 0]), abs=1e-12)
    daily = np.diff(np.log(close[190:211, 0]))                     # returns into days 191..210
    assert ret("vol_20", 210, 0) == pytest.approx(np.std(daily[np.isfinite(daily)], ddof=1), rel=1e-9)
    bridged = np.diff(np.log(np.delete(close[190:211, 0], 10)))
    assert ret("vol_20", 210, 0) != pytest.approx(np.std(bridged, ddof=1), rel=1e-6)

    # Five missing bars drop six returns (into days 150..155): vol_20 is NaN while 5 or more of them
    # are in its window (t <= 170), vol_60 (54 of 60) is not.
    assert all(np.isnan(ret("vol_20", t, 1)) for t in range(155, 171))
    assert np.isfinite(ret("vol_20", 171, 1))
    assert np.isfinite(ret("vol_60", 160, 1))
    assert np.isnan(ret("ret_1", 155, 1)) and np.isnan(ret("max_ret_20", 160, 1))
    assert np.isfinite(f[WARMUP_ROWS:, 2]).all()                   # other symbols untouched


# ----------------------------------------------------------------------------- normalisation


def test_rank_normalisation():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 12, (30, 40, 3)).astype(float)            # many ties
    x[rng.random(x.shape) < 0.2] = np.nan
    x[4, 5:, 0] = np.nan                                           # 5 values that day
    x[5, 4:, 1] = np.nan                                           # 4 values: too few
    z = normalise(x, "rank")
    assert z.shape == x.shape
    np.testing.assert_array_equal(np.isnan(z[:, :, 2]), np.isnan(x[:, :, 2]))
    assert np.isnan(z[5, :, 1]).all() and np.isfinite(z[4, :5, 0]).all()
    assert (np.abs(z[np.isfinite(z)]) < 0.5).all()
    days = np.isfinite(z).any(axis=1)
    np.testing.assert_allclose(np.nanmean(np.where(days[:, None], z, 0), axis=1)[days], 0, atol=1e-12)
    for t, j in ((0, 0), (7, 1), (29, 2)):
        ok = np.isfinite(x[t, :, j])
        want = (stats.rankdata(x[t, ok, j]) - 0.5) / ok.sum() - 0.5
        np.testing.assert_allclose(z[t, ok, j], want, rtol=0, atol=1e-15)
    tied = normalise(np.array([[1.0, 2.0, 2.0, 3.0, 4.0]]), "rank")
    np.testing.assert_allclose(tied, [[-0.4, -0.1, -0.1, 0.2, 0.4]], atol=1e-15)
    assert normalise(x.astype(np.float32)).dtype == np.float32


def test_robust_z_normalisation():
    x = np.array([[1.0, 2.0, 3.0, 4.0, 100.0, np.nan],
                  [5.0, 5.0, 5.0, 5.0, 6.0, 20.0],                 # MAD 0: mean absolute deviation
                  [7.0, 7.0, 7.0, 7.0, 7.0, np.nan],               # all equal: 0
                  [1.0, 2.0, 3.0, 4.0, np.nan, np.nan]])           # too few
    z = normalise(x, "robust_z")
    np.testing.assert_allclose(z[0, :4], (x[0, :4] - 3) / 1.4826, rtol=1e-12)
    assert z[0, 4] == 3.0 and np.isnan(z[0, 5])                    # clipped; NaN kept
    scale = 1.2533141 * np.mean(np.abs(x[1] - 5))
    np.testing.assert_allclose(z[1], np.clip((x[1] - 5) / scale, -3, 3), rtol=1e-12)
    np.testing.assert_array_equal(z[2, :5], 0.0)
    assert np.isnan(z[3]).all()
    rng = np.random.default_rng(2)
    y = rng.standard_t(2, (20, 60, 2))
    y[rng.random(y.shape) < 0.1] = np.nan
    zy = normalise(y, "robust_z")
    np.testing.assert_array_equal(np.isnan(zy), np.isnan(y))
    assert np.nanmax(np.abs(zy)) == 3.0
    np.testing.assert_allclose(np.nanmedian(zy, axis=1), 0, atol=1e-12)
    with pytest.raises(ValueError):
        normalise(y, "zscore")


# ----------------------------------------------------------------------------- labels


@pytest.mark.parametrize("horizon", [1, 5])
def test_labels(horizon):
    panel = random_panel(seed=9, t=120, n=8)
    excess, ranked = labels(panel, horizon)
    c = panel.close
    assert excess.shape == ranked.shape == c.shape
    assert np.isnan(excess[-horizon:]).all() and np.isnan(ranked[-horizon:]).all()
    assert np.isfinite(excess[:-horizon]).sum() > 0.7 * excess[:-horizon].size
    np.testing.assert_allclose(np.nansum(excess[:-horizon], axis=1), 0, atol=1e-13)
    for t in (0, 33, 120 - horizon - 1):
        complete = np.isfinite(c[t: t + horizon + 1]).all(axis=0)
        forward = c[t + horizon] / c[t] - 1
        want = np.where(complete, forward - forward[complete].mean(), np.nan)
        np.testing.assert_allclose(excess[t], want, rtol=1e-12, atol=1e-15)
    gap_rows = np.flatnonzero(np.isnan(c[:, 1]))
    t = int(gap_rows[(gap_rows > horizon) & (gap_rows < 100)][0]) - horizon   # a gap inside (t, t + h]
    assert np.isnan(excess[t, 1])
    assert (np.abs(ranked[np.isfinite(ranked)]) < 0.5).all()
    enough = np.isfinite(excess).sum(axis=1) >= 5
    np.testing.assert_array_equal(np.isnan(ranked), np.isnan(excess) | ~enough[:, None])
    assert enough[:-horizon].mean() > 0.9


# ----------------------------------------------------------------------------- daily rank IC


def test_daily_rank_ic_matches_scipy():
    rng = np.random.default_rng(4)
    t_len, n = 40, 30
    realised = rng.normal(size=(t_len, n))
    score = 0.3 * realised + rng.normal(size=(t_len, n))
    score[:, ::3] = np.round(score[:, ::3], 1)                     # ties
    realised[rng.random((t_len, n)) < 0.15] = np.nan
    score[rng.random((t_len, n)) < 0.15] = np.nan
    score[3, 9:] = np.nan                                          # 9 pairs at most: NaN
    score[6] = 1.0                                                 # constant: NaN
    ic = daily_rank_ic(score, realised)
    assert ic.shape == (t_len,)
    for t in range(t_len):
        ok = np.isfinite(score[t]) & np.isfinite(realised[t])
        if ok.sum() < 10 or np.ptp(score[t, ok]) == 0:
            assert np.isnan(ic[t]), t
        else:
            assert ic[t] == pytest.approx(stats.spearmanr(score[t, ok], realised[t, ok]).statistic, abs=1e-12)
    assert np.isfinite(ic).sum() >= t_len - 3
    assert np.nanmean(ic) > 0.1
    np.testing.assert_allclose(daily_rank_ic(np.exp(realised), realised)[np.isfinite(ic)], 1.0)
    np.testing.assert_allclose(daily_rank_ic(-realised, realised)[np.isfinite(ic)], -1.0)


# ----------------------------------------------------------------------------- speed and size


def test_speed_500_symbols_10_years():
    rng = np.random.default_rng(0)
    t_len, n = 2520, 500
    close = 100 * np.exp(np.cumsum(rng.normal(0.0003, 0.02, (t_len, n)), axis=0))
    close[rng.random((t_len, n)) < 0.01] = np.nan
    panel = make_panel(close, rng.lognormal(13, 1, (t_len, n)))
    for dtype in (np.float64, np.float32):
        tracemalloc.start()
        start = time.perf_counter()
        features = build_cross_section(panel, dtype=dtype)
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(f"\nbuild_cross_section {n} x {t_len} {np.dtype(dtype).name}: {seconds:.2f} s, "
              f"{features.shape} = {features.nbytes / 1e6:.0f} MB, peak allocated {peak / 1e6:.0f} MB")
        assert features.shape == (t_len, n, len(FEATURE_NAMES)) and features.dtype == dtype
        assert np.isfinite(features[-1]).mean() > 0.9
