"""stockml.volatility and volatility_fit: parameters recovered from a simulated GARCH series, models
beat the naive forecast there, forecasts at t ignore every later row, serving replays the fit."""

import functools
import math

import numpy as np
import pytest

from stockml.volatility import (
    VolatilityModel,
    annualised,
    backcast,
    future_mean_square,
    garch_variance,
    percent_returns,
    qlike,
)
from stockml.volatility_fit import diebold_mariano, fit_garch, hac_lags, walk_forward_volatility
from stockpred.market.sample_data import available, load_series

TRUE = {"omega": 0.02, "alpha": 0.05, "gamma": 0.10, "beta": 0.88}


def simulate_gjr(n: int, seed: int, omega: float, alpha: float, gamma: float, beta: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(n + 500)
    r = np.empty(n + 500)
    s = omega / (1 - alpha - gamma / 2 - beta)
    for t in range(n + 500):
        r[t] = np.sqrt(s) * z[t]
        s = omega + (alpha + gamma * (r[t] < 0)) * r[t] ** 2 + beta * s
    return r[500:]


@functools.cache
def simulated() -> np.ndarray:
    return simulate_gjr(5000, 7, **TRUE)


def test_gjr_recovers_known_parameters_and_matches_arch():
    r = simulated()
    fitted = fit_garch(r, asymmetric=True).params
    assert fitted["alpha"] == pytest.approx(TRUE["alpha"], abs=0.03)
    assert fitted["gamma"] == pytest.approx(TRUE["gamma"], abs=0.04)
    assert fitted["beta"] == pytest.approx(TRUE["beta"], abs=0.03)
    persistence = fitted["alpha"] + fitted["gamma"] / 2 + fitted["beta"]
    assert fitted["omega"] / (1 - persistence) == pytest.approx(1.0, rel=0.2)

    arch_model = pytest.importorskip("arch").arch_model
    reference = arch_model(r, mean="Zero", vol="GARCH", p=1, o=1, q=1).fit(disp="off").params
    names = {"omega": "omega", "alpha": "alpha[1]", "gamma": "gamma[1]", "beta": "beta[1]"}
    for ours, theirs in names.items():
        assert fitted[ours] == pytest.approx(reference[theirs], abs=5e-3)


def test_garch_models_beat_the_naive_forecast_on_a_garch_series():
    r = np.concatenate([[np.nan], simulated()])
    folds = list(range(1000, len(r), 500))
    forecasts = walk_forward_volatility(r, folds, kinds=("naive", "garch", "gjr", "har"), horizons=(1, 21))
    realised = future_mean_square(r, 1)
    judged = slice(1000, len(r) - 1)
    loss = {k: qlike(f[1][judged], realised[judged]) for k, f in forecasts.items()}
    for kind in ("garch", "gjr", "har"):
        assert loss[kind].mean() < loss["naive"].mean(), kind
    assert diebold_mariano(loss["naive"], loss["gjr"])["p_value"] < 0.01
    assert diebold_mariano(loss["gjr"], loss["naive"])["p_value"] > 0.99


def test_a_forecast_at_t_ignores_every_later_row():
    r = np.concatenate([[np.nan], simulated()[:2000]])
    folds = list(range(500, len(r), 250))
    full = walk_forward_volatility(r, folds)
    t = 1333
    cut = walk_forward_volatility(r[: t + 1], [f for f in folds if f <= t])
    for kind in full:
        for h in full[kind]:
            np.testing.assert_allclose(cut[kind][h][500: t + 1], full[kind][h][500: t + 1], rtol=1e-12)


def test_diebold_mariano_on_identical_losses_is_undefined_not_significant():
    loss = np.random.default_rng(1).exponential(size=500)
    assert np.isnan(diebold_mariano(loss, loss)["p_value"])


@pytest.mark.skipif(not available(), reason="sample data (arch package) not installed")
def test_serving_forecasts_replay_the_fitted_model_on_closes():
    close = np.array([b.close for b in load_series("SPX")])
    returns = percent_returns(close)
    model = fit_garch(returns[1:])
    p = model.params
    variance = garch_variance(returns[1:], p["omega"], p["alpha"], 0.0, p["beta"], backcast(returns[1:]))[-1]
    stored = VolatilityModel.from_dict(model.to_dict())
    forecast = stored.forecast_next(close)
    assert forecast["next_day"] == pytest.approx(float(annualised(variance)), rel=1e-9)
    assert 0.05 < forecast["next_day"] < 1.0 and 0.05 < forecast["next_21_days"] < 1.0


def test_diebold_mariano_lags_follow_the_loss_differences_own_autocorrelation():
    rng = np.random.default_rng(7)
    independent = rng.standard_normal(2500)
    overlapping = np.convolve(rng.standard_normal(2520), np.ones(21), mode="valid")  # 21-day sums
    assert hac_lags(independent, horizon=1) <= 3
    assert hac_lags(independent, horizon=21) == 20  # never fewer than h - 1
    assert hac_lags(overlapping, horizon=21) > 60
    assert diebold_mariano(overlapping, np.zeros_like(overlapping), horizon=21)["lags"] > 60


def test_data_driven_lags_reject_a_true_null_less_often_than_h_minus_1_lags():
    """Equal expected loss, loss differences that are overlapping 21-day sums: h-1 lags
    under-state the variance and over-reject; the data-driven lags come closer to 5%."""
    rng = np.random.default_rng(11)
    rejected = {"data": 0, "h-1": 0}
    simulations = 300
    for _ in range(simulations):
        d = np.convolve(rng.standard_normal(2520), np.ones(21), mode="valid")
        rejected["data"] += diebold_mariano(d, np.zeros_like(d), horizon=21)["p_value"] < 0.05
        centred = d - d.mean()
        lrv = centred @ centred / len(d) + sum(2 * (1 - lag / 21) * (centred[lag:] @ centred[:-lag]) / len(d)
                                               for lag in range(1, 21))
        rejected["h-1"] += 0.5 * math.erfc(d.mean() / math.sqrt(lrv / len(d)) / math.sqrt(2)) < 0.05
    rates = {k: v / simulations for k, v in rejected.items()}
    print(f"DM size at 21 days: {rates}")
    assert rates["data"] < rates["h-1"]
    assert rates["data"] < 0.1
