"""stockml.features: bar conversion, labels, no look-ahead in any feature row, and the same numbers
as the pandas implementation it replaced (kept below as the reference)."""

import dataclasses
import datetime as dt
import functools

import numpy as np
import pandas as pd
import pytest

from stockml.features import (
    FEATURE_NAMES,
    Frame,
    _ewm_mean,
    as_day,
    build_features,
    build_targets,
    frame_from_bars,
    rolling_mean,
)
from stockpred.market.prices import Bar
from stockpred.market.sample_data import available, load_series

pytestmark = pytest.mark.skipif(not available(), reason="sample data (arch package) not installed")

# Measured on the full SPX and IXIC sample histories: EWM-based features (RSI, MACD) are bit-identical
# to pandas; rolling means and standard deviations differ by at most 2.4e-11 (volume z-score) and
# 1.2e-10 relative, from summing each window afresh rather than pandas' running sums.
RTOL, ATOL = 1e-9, 1e-12


# --- the pandas implementation this module replaced: the reference for equality ----------------

def ref_frame_from_bars(bars) -> pd.DataFrame:
    rows = [(b.date, b.open, b.high, b.low, b.close, b.volume) for b in bars]
    df = pd.DataFrame(rows, columns=["date", "open", "high", "low", "close", "volume"])
    df["date"] = pd.to_datetime(df["date"])
    df = df.set_index("date").sort_index().astype(float)
    if df.index.has_duplicates:
        raise ValueError("bars contain duplicate dates")
    return df


def ref_pandas_frame(frame: Frame) -> pd.DataFrame:
    return pd.DataFrame({c: getattr(frame, c) for c in ("open", "high", "low", "close", "volume")},
                        index=pd.DatetimeIndex(frame.dates, name="date"))


def _ref_ema(x: pd.Series, span: int) -> pd.Series:
    return x.ewm(span=span, adjust=False, min_periods=span).mean()


def _ref_rsi(close: pd.Series, n: int = 14) -> pd.Series:
    change = close.diff()
    gain = change.clip(lower=0).ewm(alpha=1 / n, adjust=False, min_periods=n).mean()
    loss = (-change).clip(lower=0).ewm(alpha=1 / n, adjust=False, min_periods=n).mean()
    return gain / (gain + loss)


def ref_build_features(df: pd.DataFrame) -> pd.DataFrame:
    close, high, low = df["close"], df["high"], df["low"]
    log_close = np.log(close)
    log_ret = log_close.diff()
    f = pd.DataFrame(index=df.index)
    for n in (1, 2, 5, 10, 20):
        f[f"ret_{n}"] = log_close.diff(n)
    f["vol_5"] = log_ret.rolling(5).std()
    f["vol_20"] = log_ret.rolling(20).std()
    f["rsi_14"] = _ref_rsi(close, 14)
    macd = _ref_ema(close, 12) - _ref_ema(close, 26)
    signal = macd.ewm(span=9, adjust=False, min_periods=9).mean()
    f["macd"] = macd / close
    f["macd_signal"] = signal / close
    f["macd_hist"] = (macd - signal) / close
    for n in (10, 20, 50):
        f[f"close_sma_{n}"] = close / close.rolling(n).mean() - 1
    log_volume = np.log(df["volume"].where(df["volume"] > 0).ffill())
    std = log_volume.rolling(20).std()
    f["volume_z_20"] = ((log_volume - log_volume.rolling(20).mean()) / std.where(std > 0)).fillna(0.0)
    f["range_hl"] = (high - low) / close
    f = f.replace([np.inf, -np.inf], np.nan)
    return f[list(FEATURE_NAMES)]


def ref_build_targets(df: pd.DataFrame) -> pd.DataFrame:
    next_return = df["close"].shift(-1) / df["close"] - 1
    direction = (next_return > 0).astype(float).where(next_return.notna())
    return pd.DataFrame({"next_return": next_return, "direction": direction}, index=df.index)


# --- helpers shared with the other stockml tests ------------------------------------------------

@functools.cache
def spx() -> Frame:
    return frame_from_bars(load_series("SPX")).between("2011-01-01", "2016-12-31")


def changed_after(frame: Frame, t: str) -> Frame:
    """Same bars up to t; every later price scaled by 1.5 (with noise) and volume scrambled."""
    rng = np.random.default_rng(7)
    later = frame.dates > as_day(t)
    noise = rng.uniform(0.9, 1.1, later.sum())
    changed = {}
    for col in ("open", "high", "low", "close"):
        values = getattr(frame, col).copy()
        values[later] = values[later] * 1.5 * noise
        changed[col] = values
    volume = frame.volume.copy()
    volume[later] = rng.permutation(volume[later])
    return dataclasses.replace(frame, **changed, volume=volume)


def with_volume(frame: Frame, volume: np.ndarray) -> Frame:
    return dataclasses.replace(frame, volume=np.asarray(volume, dtype=float))


# --- tests --------------------------------------------------------------------------------------

def test_frame_from_bars_sorts_and_types():
    bars = [Bar(dt.date(2020, 1, 3), 2, 3, 1, 2.5, 10), Bar(dt.date(2020, 1, 2), 1, 2, 0.5, 1.5, 20)]
    frame = frame_from_bars(bars)
    assert frame.dates.dtype == np.dtype("datetime64[D]")
    assert list(frame.dates.astype(str)) == ["2020-01-02", "2020-01-03"]
    for col in ("open", "high", "low", "close", "volume"):
        assert getattr(frame, col).dtype == np.float64
    np.testing.assert_array_equal(frame.close, [1.5, 2.5])
    assert frame.volume[0] == 20.0 and len(frame) == 2
    assert frame.between("2020-01-03").close.tolist() == [2.5]
    assert len(frame_from_bars([])) == 0


def test_frame_from_bars_refuses_duplicate_dates():
    bar = Bar(dt.date(2020, 1, 2), 1, 2, 0.5, 1.5, 20)
    with pytest.raises(ValueError):
        frame_from_bars([bar, bar])


@pytest.mark.parametrize("symbol", ["SPX", "IXIC"])
def test_features_and_targets_equal_the_pandas_reference_on_real_data(symbol):
    bars = load_series(symbol)
    frame, df = frame_from_bars(bars), ref_frame_from_bars(bars)
    np.testing.assert_array_equal(frame.dates, df.index.to_numpy().astype("datetime64[D]"))
    features, reference = build_features(frame), ref_build_features(df).to_numpy()
    np.testing.assert_array_equal(np.isnan(features), np.isnan(reference))
    np.testing.assert_allclose(features, reference, rtol=RTOL, atol=ATOL)
    targets, ref_targets = build_targets(frame), ref_build_targets(df)
    np.testing.assert_array_equal(targets.next_return, ref_targets["next_return"].to_numpy())
    np.testing.assert_array_equal(targets.direction, ref_targets["direction"].to_numpy())


@pytest.mark.parametrize("case", ["gaps", "all_zero", "constant", "flat_stretch"])
def test_volume_edge_cases_equal_the_pandas_reference(case):
    frame = spx()[:400]
    volume = frame.volume.copy()
    if case == "gaps":
        volume[[0, 1, 30, 31, 32, 200]] = 0
    elif case == "all_zero":
        volume[:] = 0
    elif case == "constant":
        volume[:] = 1e6
    else:
        volume[100:140] = volume[100]
    frame = with_volume(frame, volume)
    features, reference = build_features(frame), ref_build_features(ref_pandas_frame(frame)).to_numpy()
    np.testing.assert_array_equal(np.isnan(features), np.isnan(reference))
    np.testing.assert_allclose(features, reference, rtol=RTOL, atol=ATOL)


def test_exponential_means_match_pandas_step_for_step_including_gaps():
    rng = np.random.default_rng(1)
    for trial in range(60):
        x = rng.normal(size=int(rng.integers(0, 80)))
        x[rng.random(len(x)) < 0.25] = np.nan
        if trial % 3 == 0:
            x[:5] = np.nan
        min_periods = int(rng.integers(1, 15))
        for span, com in ((12, 5.5), (26, 12.5)):
            expected = pd.Series(x, dtype=float).ewm(span=span, adjust=False, min_periods=min_periods).mean()
            np.testing.assert_array_equal(_ewm_mean(x, com=com, min_periods=min_periods), expected.to_numpy())
        expected = pd.Series(x, dtype=float).ewm(alpha=1 / 14, adjust=False, min_periods=min_periods).mean()
        np.testing.assert_array_equal(_ewm_mean(x, com=(1 - 1 / 14) / (1 / 14), min_periods=min_periods),
                                      expected.to_numpy())


def test_rolling_mean_is_nan_until_the_window_fills_and_exact_on_flat_windows():
    x = np.array([1.0, 2.0, np.nan, 4.0, 0.1, 0.1, 0.1, 0.1])
    np.testing.assert_array_equal(rolling_mean(x, 3)[:5], [np.nan, np.nan, np.nan, np.nan, np.nan])
    assert rolling_mean(x, 4)[-1] == 0.1
    assert np.isnan(rolling_mean(x[:2], 3)).all()


def test_features_have_the_declared_columns_and_warm_up_only_at_the_start():
    f = build_features(spx())
    assert f.shape == (len(spx()), len(FEATURE_NAMES))
    complete = ~np.isnan(f).any(axis=1)
    first = complete.argmax()
    assert first > 0 and complete[first:].all()
    assert np.isfinite(f[first:]).all()


def test_targets_are_next_day_return_and_direction():
    frame = spx()
    t = build_targets(frame)
    assert t.next_return[0] == pytest.approx(frame.close[1] / frame.close[0] - 1)
    assert np.isnan(t.next_return[-1]) and np.isnan(t.direction[-1])
    known = ~np.isnan(t.next_return)
    np.testing.assert_array_equal(t.direction[known] == 1, t.next_return[known] > 0)


@pytest.mark.parametrize("t", ["2013-03-15", "2014-06-30", "2015-11-02"])
def test_changing_later_bars_never_changes_earlier_feature_rows(t):
    upto = spx().dates <= as_day(t)
    original = build_features(spx())[upto]
    changed = build_features(changed_after(spx(), t))[upto]
    np.testing.assert_array_equal(original, changed)
    assert not np.array_equal(build_features(spx())[~upto], build_features(changed_after(spx(), t))[~upto])


def test_features_at_t_equal_features_computed_on_data_cut_at_t():
    frame = spx()
    full = build_features(frame)
    rng = np.random.default_rng(0)
    for i in rng.choice(np.arange(260, len(frame)), size=15, replace=False):
        cut = build_features(frame.between(last=frame.dates[i]))
        np.testing.assert_allclose(full[i], cut[-1], rtol=1e-12, atol=0)


@pytest.mark.parametrize("volume", [0.0, 1e6])
def test_missing_or_constant_volume_leaves_features_usable(volume):
    frame = with_volume(spx()[:200], np.full(200, volume))
    feats = build_features(frame)
    assert not np.isnan(feats[60:]).any()
    assert (feats[60:, FEATURE_NAMES.index("volume_z_20")] == 0).all()
