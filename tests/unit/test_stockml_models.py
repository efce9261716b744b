"""stockml.models: both kinds fit, predict, are deterministic, check their input, and ignore later bars."""

import functools

import numpy as np
import pytest

from stockml.features import FEATURE_NAMES, Frame, as_day, frame_from_bars
from stockml.models import (
    MODEL_KINDS,
    TrainingRows,
    action_for,
    make_model,
    predict_next,
    train,
    training_rows,
)
from stockpred.market.sample_data import available, load_series
from tests.unit.test_stockml_features import changed_after

pytestmark = pytest.mark.skipif(not available(), reason="sample data (arch package) not installed")


@functools.cache
def spx() -> Frame:
    return frame_from_bars(load_series("SPX")).between("2011-01-01", "2016-12-31")


def fitted(kind: str) -> tuple:
    rows = training_rows(spx())
    return make_model(kind).fit(rows.X, rows.direction, rows.next_return,
                                trained_through=str(rows.dates[-1])), rows


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
    prob_up, expected = model.predict(rows.X)
    assert prob_up.shape == expected.shape == (len(rows.X),)
    assert ((prob_up > 0) & (prob_up < 1)).all()
    assert np.abs(expected).max() < 0.1
    assert model.kind == kind and model.feature_names == FEATURE_NAMES
    assert model.trained_through == str(rows.dates[-1])


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_train_fits_every_known_row_and_records_the_last_date(kind):
    model = train(spx(), kind)
    reference, rows = fitted(kind)
    assert model.trained_through == str(rows.dates[-1])
    for x, y in zip(model.predict(rows.X[-30:]), reference.predict(rows.X[-30:]), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_fitting_is_deterministic(kind):
    (a, rows), (b, _) = fitted(kind), fitted(kind)
    for x, y in zip(a.predict(rows.X), b.predict(rows.X), strict=True):
        np.testing.assert_array_equal(x, y)


def test_predict_refuses_rows_of_the_wrong_width():
    model, rows = fitted("logreg")
    with pytest.raises(ValueError, match="features"):
        model.predict(rows.X[:, :-1])
    with pytest.raises(ValueError, match="features"):
        model.predict(rows.X[0])


def test_training_rows_are_complete_and_never_include_the_last_bar():
    t = "2015-09-15"
    rows = training_rows(spx().between(last=t))
    assert isinstance(rows, TrainingRows)
    assert rows.dates[-1] < as_day(t)
    assert not np.isnan(rows.X).any() and not np.isnan(rows.next_return).any()
    np.testing.assert_array_equal(rows.direction == 1, rows.next_return > 0)


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_signal_at_t_ignores_everything_after_t(kind):
    t = "2015-09-15"
    signals = [predict_next(train(f.between(last=t), kind), f.between(last=t))
               for f in (spx(), changed_after(spx(), t))]
    assert signals[0] == signals[1]
    assert signals[0]["date"] == t and signals[0]["action"] in ("buy", "sell")
