"""stockml.sizing: exposure in [0, max], smaller when volatility is high, leverage only when
configured, and a prediction's risk summary from a model's stored metadata."""

import numpy as np
import pytest

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
