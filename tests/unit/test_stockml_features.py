"""stockml.features: bar conversion, labels, and no look-ahead in any feature row."""

import datetime as dt
import functools

import numpy as np
import pandas as pd
import pytest

from stockml.features import FEATURE_NAMES, build_features, build_targets, frame_from_bars
from stockpred.prices import Bar
from stockpred.sample_data import available, load_series

pytestmark = pytest.mark.skipif(not available(), reason="sample data (arch package) not installed")


@functools.cache
def spx() -> pd.DataFrame:
    return frame_from_bars(load_series("SPX")).loc["2011":"2016"]


def changed_after(df: pd.DataFrame, t: str) -> pd.DataFrame:
    """Same bars up to t; every later price scaled by 1.5 (with noise) and volume scrambled."""
    rng = np.random.default_rng(7)
    out = df.copy()
    later = out.index > pd.Timestamp(t)
    noise = rng.uniform(0.9, 1.1, later.sum())
    for col in ("open", "high", "low", "close"):
        out.loc[later, col] = out.loc[later, col] * 1.5 * noise
    out.loc[later, "volume"] = rng.permutation(out.loc[later, "volume"].to_numpy())
    return out


def test_frame_from_bars_sorts_and_types():
    bars = [Bar(dt.date(2020, 1, 3), 2, 3, 1, 2.5, 10), Bar(dt.date(2020, 1, 2), 1, 2, 0.5, 1.5, 20)]
    df = frame_from_bars(bars)
    assert list(df.columns) == ["open", "high", "low", "close", "volume"]
    assert isinstance(df.index, pd.DatetimeIndex) and df.index.name == "date"
    assert df.index.is_monotonic_increasing
    assert all(dtype == np.float64 for dtype in df.dtypes)
    assert df.loc["2020-01-02", "volume"] == 20.0


def test_frame_from_bars_refuses_duplicate_dates():
    bar = Bar(dt.date(2020, 1, 2), 1, 2, 0.5, 1.5, 20)
    with pytest.raises(ValueError):
        frame_from_bars([bar, bar])


def test_features_have_the_declared_columns_and_warm_up_only_at_the_start():
    f = build_features(spx())
    assert tuple(f.columns) == FEATURE_NAMES
    assert f.index.equals(spx().index)
    complete = f.notna().all(axis=1)
    first = complete.to_numpy().argmax()
    assert first > 0 and complete.iloc[first:].all()
    assert np.isfinite(f.iloc[first:].to_numpy()).all()


def test_targets_are_next_day_return_and_direction():
    df = spx()
    t = build_targets(df)
    assert t["next_return"].iloc[0] == pytest.approx(df["close"].iloc[1] / df["close"].iloc[0] - 1)
    assert t.iloc[-1].isna().all()
    known = t.dropna()
    assert ((known["direction"] == 1) == (known["next_return"] > 0)).all()


@pytest.mark.parametrize("t", ["2013-03-15", "2014-06-30", "2015-11-02"])
def test_changing_later_bars_never_changes_earlier_feature_rows(t):
    original = build_features(spx()).loc[:t]
    changed = build_features(changed_after(spx(), t)).loc[:t]
    pd.testing.assert_frame_equal(original, changed, check_exact=True)


def test_features_at_t_equal_features_computed_on_data_cut_at_t():
    df = spx()
    full = build_features(df)
    rng = np.random.default_rng(0)
    for t in rng.choice(df.index[260:], size=15, replace=False):
        cut = build_features(df.loc[:t])
        np.testing.assert_allclose(full.loc[t].to_numpy(), cut.loc[t].to_numpy(), rtol=1e-12, atol=0)


@pytest.mark.parametrize("volume", [0.0, 1e6])
def test_missing_or_constant_volume_leaves_features_usable(volume):
    df = spx().iloc[:200].copy()
    df["volume"] = volume
    feats = build_features(df)
    assert feats.iloc[60:].notna().all(axis=None)
    assert (feats["volume_z_20"].iloc[60:] == 0).all()
