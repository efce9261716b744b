"""stockml.sizing: exposure in [0, max], smaller when volatility is high, leverage only when
configured, and a prediction's risk summary from a model's stored metadata."""

import json

import numpy as np
import pytest

from stockml.signals import risk_for
from stockml.sizing import SizingRule, conviction_multiplier, exposure, recommend
from stockml.volatility import VolatilityModel
from stockml.volatility_fit import fit_garch


def test_exposure_targets_volatility_within_its_limits():
    daily_variance = np.array([0.25, 1.0, 4.0, np.nan])  # 7.9%, 15.9%, 31.7% a year, unknown
    target = np.full(4, 0.159)
    sized = exposure(daily_variance, target, SizingRule())
    assert sized[0] == 1.0
    assert sized[1] == pytest.approx(1.0, abs=0.01)
    assert sized[2] == pytest.approx(0.5, abs=0.01)
    assert sized[3] == 0.0
    levered = exposure(daily_variance, target, SizingRule(max_exposure=2.0))
    assert levered[0] == pytest.approx(2.0, abs=0.02) and levered.max() <= 2.0


def test_conviction_scales_down_a_bearish_call_and_never_below_zero():
    assert conviction_multiplier(0.5, 8.0) == 1.0
    assert conviction_multiplier(0.45, 8.0) == pytest.approx(0.2)
    assert conviction_multiplier(0.2, 8.0) == 0.0
    at_target = np.array([1.0])
    bearish = exposure(at_target, np.array([0.159]), SizingRule(conviction_strength=8.0), 0.45)
    assert bearish[0] == pytest.approx(0.2, abs=0.01)


def test_recommend_reads_a_models_stored_metadata():
    rng = np.random.default_rng(4)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 1500)))
    returns = 100 * np.diff(np.log(close))
    volatility = fit_garch(returns).to_dict()
    out = recommend(close, volatility, SizingRule(conviction_strength=4.0).to_dict(), prob_up=0.52)
    assert set(out) == {"volatility", "exposure", "target_volatility", "max_exposure"}
    assert 0.10 < out["volatility"]["next_day"] < 0.22 and 0.10 < out["volatility"]["next_21_days"] < 0.22
    assert 0.0 <= out["exposure"] <= 1.0
    assert VolatilityModel.from_dict(volatility).kind == out["volatility"]["model"] == "garch"


def _garch_meta(close, rule):
    returns = 100 * np.diff(np.log(close))
    return {"volatility": fit_garch(returns).to_dict(), "sizing": rule.to_dict()}


def test_a_predictions_risk_says_how_much_to_hold_and_why_in_words():
    rng = np.random.default_rng(4)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 1500)))
    risk = risk_for(_garch_meta(close, SizingRule(conviction_strength=4.0)), close, 0.53)
    assert risk["reason"].startswith(f"Hold {risk['exposure']:.0%} of your capital: prices are "
                                     f"forecast to swing {risk['volatility']['next_21_days']:.0%} a year")
    assert "the model's lean (up, 53.0% chance of an up day)" in risk["reason"]
    assert (risk["horizon_days"], risk["conviction_strength"]) == (21, 4.0)

    ambitious = SizingRule(horizon=1, target_multiple=1.25)  # a target above the forecast
    capped = risk_for(_garch_meta(close, ambitious), close, 0.5)
    assert capped["exposure"] == 1.0 and capped["reason"].endswith("capped at 100%.")
    levered = risk_for(_garch_meta(close, SizingRule(horizon=1, target_multiple=1.25,
                                                     max_exposure=2.0)), close, 0.5)
    assert 1.0 < levered["exposure"] <= 2.0


def test_too_short_a_history_recommends_nothing_and_stays_valid_json():
    close = np.array([100.0, 101.0, 100.5])
    meta = {"volatility": VolatilityModel("naive").to_dict(), "sizing": SizingRule().to_dict()}
    risk = risk_for(meta, close, 0.6)
    assert risk["exposure"] == 0.0 and risk["volatility"]["next_21_days"] is None
    assert risk["reason"] == "No volatility forecast could be made, so hold nothing."
    json.dumps(risk, allow_nan=False)
