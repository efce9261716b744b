"""stockml.models: both kinds fit, predict, are deterministic, survive joblib, and ignore later bars."""

import functools

import joblib
import numpy as np
import pandas as pd
import pytest

from stockml.features import FEATURE_NAMES, frame_from_bars
from stockml.models import MODEL_KINDS, action_for, make_model, predict_next, train, training_frame
from stockpred.sample_data import available, load_series
from tests.unit.test_stockml_features import changed_after

pytestmark = pytest.mark.skipif(not available(), reason="sample data (arch package) not installed")


@functools.cache
def spx() -> pd.DataFrame:
    return frame_from_bars(load_series("SPX")).loc["2011":"2016"]


def fitted(kind: str):
    rows = training_frame(spx())
    return make_model(kind).fit(rows[list(FEATURE_NAMES)], rows["direction"], rows["next_return"]), rows


def test_action_threshold():
    assert action_for(0.51) == "buy"
    assert action_for(0.5) == "sell"
    assert action_for(0.2) == "sell"


def test_unknown_kind_or_parameter_is_refused():
    with pytest.raises(ValueError):
        make_model("svm")
    with pytest.raises(ValueError):
        make_model("logreg", max_depth=3)


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_fit_predict_shapes_and_ranges(kind):
    model, rows = fitted(kind)
    prob_up, expected = model.predict(rows[list(FEATURE_NAMES)])
    assert prob_up.shape == expected.shape == (len(rows),)
    assert ((prob_up > 0) & (prob_up < 1)).all()
    assert np.abs(expected).max() < 0.1
    assert model.kind == kind and model.feature_names == FEATURE_NAMES
    assert model.trained_through == rows.index[-1].date().isoformat()


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_fitting_is_deterministic(kind):
    (a, rows), (b, _) = fitted(kind), fitted(kind)
    X = rows[list(FEATURE_NAMES)]
    for x, y in zip(a.predict(X), b.predict(X), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_joblib_round_trip_predicts_identically(kind, tmp_path):
    model, rows = fitted(kind)
    joblib.dump(model, tmp_path / "model.joblib")
    loaded = joblib.load(tmp_path / "model.joblib")
    X = rows[list(FEATURE_NAMES)].iloc[-50:]
    for x, y in zip(model.predict(X), loaded.predict(X), strict=True):
        np.testing.assert_array_equal(x, y)
    for attr in ("kind", "params", "feature_names", "trained_through"):
        assert getattr(loaded, attr) == getattr(model, attr)


def test_predict_reorders_columns_by_name():
    model, rows = fitted("logreg")
    X = rows[list(FEATURE_NAMES)].iloc[-20:]
    for x, y in zip(model.predict(X), model.predict(X[X.columns[::-1]]), strict=True):
        np.testing.assert_array_equal(x, y)


def test_training_never_uses_the_last_bar_whose_outcome_is_unknown():
    t = "2015-09-15"
    rows = training_frame(spx().loc[:t])
    assert rows.index[-1] < pd.Timestamp(t)


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_signal_at_t_ignores_everything_after_t(kind):
    t = "2015-09-15"
    signals = [predict_next(train(df.loc[:t], kind), df.loc[:t]) for df in (spx(), changed_after(spx(), t))]
    assert signals[0] == signals[1]
    assert signals[0]["date"] == t and signals[0]["action"] in ("buy", "sell")
