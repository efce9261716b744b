"""stockml.performance: hand-computed examples, identities, a year-boundary split, edge cases, and the
probabilistic and deflated Sharpe ratios tested by simulation (their false-positive rates under a null
of no skill, their power under a planted Sharpe)."""

import json
import math
import warnings

import numpy as np
import pytest
from scipy import stats

from stockml.performance import (
    TRADING_DAYS,
    annual_return,
    beta_alpha,
    calmar,
    deflated_sharpe,
    drawdown,
    expected_max_sharpe,
    information_ratio,
    probabilistic_sharpe,
    sharpe,
    sortino,
    summary,
    yearly,
)

ROOT = math.sqrt(TRADING_DAYS)


def test_drawdown_depth_and_duration_counted_by_hand():
    # equity 1, 1.1, 0.99, 1.0395, 1.14345, 1.1320155: below the 1.1 peak on days 2-3, regained on day 4
    assert drawdown([0.1, -0.1, 0.05, 0.1, -0.01]) == {
        "max_drawdown": pytest.approx(-0.1), "max_drawdown_days": 2}
    # the starting equity 1.0 is a peak: days 1-2 below it, regained on day 3
    assert drawdown([-0.1, 0.05, 0.2])["max_drawdown_days"] == 2
    # never regains the 1.1 peak: 3 days under water until the end
    down = drawdown([0.1, -0.05, -0.05, 0.01])
    assert down["max_drawdown"] == pytest.approx(1.1 * 0.95 * 0.95 / 1.1 - 1)
    assert down["max_drawdown_days"] == 3
    # the deepest drawdown is not the longest: 1 day at -50%, then 4 days at about -1%
    down = drawdown([0.5, -0.5, 1.0, -0.01, 0.001, 0.001, 0.001, 0.5])
    assert down["max_drawdown"] == pytest.approx(-0.5)
    assert down["max_drawdown_days"] == 4
    # exactly regaining the peak (1.5 -> 0.75 -> 1.5, exact in binary) ends the stretch
    assert drawdown([0.5, -0.5, 1.0]) == {"max_drawdown": -0.5, "max_drawdown_days": 1}
    assert drawdown([0.01, 0.0, 0.02]) == {"max_drawdown": 0.0, "max_drawdown_days": 0}


def test_sharpe_sortino_calmar_and_annual_return_by_hand():
    net = np.array([0.03, -0.01, 0.02, -0.02])
    # mean 0.005, deviations .025 -.015 .015 -.025, sample std with ddof=1
    std = math.sqrt((0.025**2 + 0.015**2 + 0.015**2 + 0.025**2) / 3)
    assert sharpe(net) == pytest.approx(0.005 / std * ROOT)
    # downside deviation sqrt((0.01^2 + 0.02^2) / 4), over all four days
    assert sortino(net) == pytest.approx(0.005 / math.sqrt(0.0005 / 4) * ROOT)
    final = 1.03 * 0.99 * 1.02 * 0.98
    assert annual_return(net) == pytest.approx(final ** (TRADING_DAYS / 4) - 1)
    # equity 1.03, 1.0197, 1.040094, 1.01929212: deepest fall -2% from the 1.040094 peak
    assert drawdown(net)["max_drawdown"] == pytest.approx(-0.02)
    assert calmar(net) == pytest.approx((final ** 63 - 1) / 0.02)
    assert sharpe([0.01, 0.03]) == pytest.approx(math.sqrt(2) * ROOT)
    # no downside, no drawdown: undefined rather than infinite
    assert math.isnan(sortino([0.01, 0.02, 0.0]))
    assert math.isnan(calmar([0.01, 0.02, 0.0]))
    assert annual_return([-1.0, 0.5]) == -1.0  # wiped out


def test_beta_alpha_and_information_ratio_identities():
    b = np.random.default_rng(1).normal(0.0004, 0.01, 500)
    beta, alpha = beta_alpha(b, b)
    assert beta == pytest.approx(1.0) and alpha == pytest.approx(0.0, abs=1e-12)
    beta, alpha = beta_alpha(2 * b, b)
    assert beta == pytest.approx(2.0) and alpha == pytest.approx(0.0, abs=1e-12)
    beta, alpha = beta_alpha(0.5 * b + 0.0001, b)
    assert beta == pytest.approx(0.5) and alpha == pytest.approx(0.0001 * TRADING_DAYS)
    assert all(math.isnan(v) for v in beta_alpha(b, np.full(500, 0.001)))  # constant benchmark
    assert math.isnan(information_ratio(b, b))
    # active returns 0.01 and 0.03: mean 0.02, std 0.01 sqrt(2)
    assert information_ratio([0.02, 0.01], [0.01, -0.02]) == pytest.approx(math.sqrt(2) * ROOT)
    assert information_ratio(b + 0.001, b) != information_ratio(b, b + 0.001)  # sign matters
    assert information_ratio(b + 0.001, b) > 0


def test_yearly_rows_split_at_the_year_boundary():
    dates = np.array(["2020-12-30", "2020-12-31", "2021-01-04", "2021-01-05", "2021-01-06", "2022-01-03"],
                     dtype="datetime64[D]")
    net = np.array([0.1, -0.1, 0.02, -0.05, 0.03, -0.01])
    bench = np.array([0.01, 0.01, 0.0, 0.0, 0.01, 0.02])
    y2020, y2021, y2022 = yearly(dates, net, bench)
    assert (y2020["year"], y2020["days"], y2021["year"], y2021["days"]) == (2020, 2, 2021, 3)
    assert y2020["return"] == pytest.approx(1.1 * 0.9 - 1)
    assert y2020["benchmark_return"] == pytest.approx(1.01**2 - 1)
    assert y2020["excess"] == pytest.approx(0.99 - 1.0201)
    assert y2020["max_drawdown"] == pytest.approx(-0.1)
    assert y2020["sharpe"] == pytest.approx(0.0, abs=1e-9)
    assert y2021["return"] == pytest.approx(1.02 * 0.95 * 1.03 - 1)
    # the year's own drawdown: from its 1.02 peak, not from 2020's
    assert y2021["max_drawdown"] == pytest.approx(-0.05)
    assert y2021["sharpe"] == pytest.approx(sharpe(net[2:5]))
    assert y2022 == {"year": 2022, "days": 1, "return": pytest.approx(-0.01),
                     "benchmark_return": pytest.approx(0.02), "excess": pytest.approx(-0.03),
                     "sharpe": None, "max_drawdown": pytest.approx(-0.01)}


def test_probabilistic_sharpe_matches_a_reference_and_penalises_negative_skew():
    rng = np.random.default_rng(2)
    net = rng.standard_t(4, 750) * 0.01 + 0.0008
    sr = net.mean() / net.std(ddof=1)
    g3, g4 = stats.skew(net), stats.kurtosis(net, fisher=False)
    for star in (0.0, 0.02, 0.05):
        z = (sr - star) * math.sqrt(len(net) - 1) / math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr**2)
        assert probabilistic_sharpe(net, star) == pytest.approx(stats.norm.cdf(z), rel=1e-9)
    # symmetric two-point returns: g3 = 0, g4 = 1, so z = (SR - SR*) sqrt(n - 1) exactly
    two_point = 0.01 + 0.01 * np.tile([1.0, -1.0], 50)
    sr = two_point.mean() / two_point.std(ddof=1)
    assert probabilistic_sharpe(two_point, sr - 1 / math.sqrt(99)) == pytest.approx(stats.norm.cdf(1.0))
    # same Sharpe, skewed to the left: less confidence than skewed to the right
    right = rng.exponential(0.01, 1000) - 0.009
    assert probabilistic_sharpe(-right + 2 * right.mean()) < probabilistic_sharpe(right)


def test_psr_rejects_a_zero_sharpe_about_5_percent_of_the_time_and_finds_a_planted_one():
    rng = np.random.default_rng(20240601)
    days = rng.normal(0.0, 0.01, (2000, 1000))
    null = np.mean([probabilistic_sharpe(r) > 0.95 for r in days])
    assert 0.03 <= null <= 0.07
    planted = np.mean([probabilistic_sharpe(r + 0.001) > 0.95 for r in days])  # mean 0.1 std
    assert planted > 0.5


def test_deflated_sharpe_keeps_the_best_of_many_no_skill_trials_from_looking_significant():
    rng = np.random.default_rng(7)
    trials, simulations = 20, 400
    deflated = naive = 0
    for _ in range(simulations):
        runs = rng.normal(0.0, 0.01, (trials, 1000))
        best = runs[np.argmax(runs.mean(axis=1) / runs.std(axis=1, ddof=1))]
        deflated += deflated_sharpe(best, trials)["deflated_sharpe"] > 0.95
        naive += probabilistic_sharpe(best) > 0.95
    assert deflated / simulations <= 0.08
    assert naive / simulations > 0.25


def test_deflated_sharpe_benchmark_is_the_expected_best_of_n():
    gamma = 0.5772156649
    spread = (1 - gamma) * stats.norm.ppf(1 - 1 / 20) + gamma * stats.norm.ppf(1 - 1 / (20 * math.e))
    assert expected_max_sharpe(20, 0.04) == pytest.approx(0.2 * spread)
    # close to the simulated mean maximum of N standard normals (the formula is an approximation)
    rng = np.random.default_rng(3)
    for n in (20, 100):
        simulated = rng.standard_normal((20000, n)).max(axis=1).mean()
        assert expected_max_sharpe(n, 1.0) == pytest.approx(simulated, rel=0.03)
    net = np.random.default_rng(4).normal(0.0005, 0.01, 1000)
    one = deflated_sharpe(net, 1)
    assert one == {"deflated_sharpe": pytest.approx(probabilistic_sharpe(net)), "expected_max_sharpe": 0.0,
                   "trials": 1}
    many = deflated_sharpe(net, 20)
    assert many["expected_max_sharpe"] == pytest.approx(spread / math.sqrt(999) * ROOT)
    assert many["deflated_sharpe"] == pytest.approx(probabilistic_sharpe(net, spread / math.sqrt(999)))
    assert many["deflated_sharpe"] < one["deflated_sharpe"]
    known = deflated_sharpe(net, 20, trial_sharpe_variance=0.0)
    assert known["deflated_sharpe"] == pytest.approx(probabilistic_sharpe(net))
    with pytest.raises(ValueError):
        deflated_sharpe(net, 0)


def test_short_constant_and_mismatched_inputs():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no division warnings either
        for net in ([], [0.01]):
            for value in (annual_return(net), sharpe(net), sortino(net), calmar(net),
                          probabilistic_sharpe(net), information_ratio(net, net),
                          *beta_alpha(net, net), deflated_sharpe(net, 10)["deflated_sharpe"]):
                assert math.isnan(value)
        empty = drawdown([])
        assert math.isnan(empty["max_drawdown"]) and empty["max_drawdown_days"] is None
        assert drawdown([-0.01]) == {"max_drawdown": pytest.approx(-0.01), "max_drawdown_days": 1}
        constant = np.full(300, 0.001)
        assert math.isnan(sharpe(constant)) and math.isnan(probabilistic_sharpe(constant))
        assert math.isnan(deflated_sharpe(constant, 5)["deflated_sharpe"])
        assert summary(np.array([], dtype="datetime64[D]"), [], []) == {
            "annual_return": None, "sharpe": None, "sortino": None, "calmar": None, "max_drawdown": None,
            "max_drawdown_days": None, "information_ratio": None, "beta": None, "alpha": None, "psr": None,
            "yearly": []}
        dates = np.datetime64("2021-01-01") + np.arange(300)
        flat = summary(dates, constant, constant, trials=3)
        assert flat["sharpe"] is None and flat["psr"] is None and flat["deflated_sharpe"] is None
        assert flat["information_ratio"] is None and flat["beta"] is None
        assert flat["max_drawdown"] == 0.0 and flat["calmar"] is None
    with pytest.raises(ValueError):
        information_ratio([0.01, 0.02], [0.01])
    with pytest.raises(ValueError):
        beta_alpha(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError):
        yearly(np.array(["2021-01-04"], dtype="datetime64[D]"), [0.01, 0.02], [0.0, 0.0])


def test_summary_is_json_safe_and_agrees_with_the_single_functions():
    rng = np.random.default_rng(5)
    dates = np.datetime64("2019-01-02") + np.arange(800)
    bench = rng.normal(0.0003, 0.01, 800)
    net = 0.8 * bench + rng.normal(0.0002, 0.005, 800)
    report = summary(dates, net, bench, trials=12)
    json.dumps(report, allow_nan=False)
    assert set(report) == {"annual_return", "sharpe", "sortino", "calmar", "max_drawdown",
                           "max_drawdown_days", "information_ratio", "beta", "alpha", "psr", "yearly",
                           "deflated_sharpe", "expected_max_sharpe"}
    assert report["sharpe"] == pytest.approx(sharpe(net))
    assert report["beta"] == pytest.approx(0.8, abs=0.05)
    assert report["max_drawdown_days"] == drawdown(net)["max_drawdown_days"]
    assert report["deflated_sharpe"] == pytest.approx(deflated_sharpe(net, 12)["deflated_sharpe"])
    assert [row["year"] for row in report["yearly"]] == [2019, 2020, 2021]
    assert sum(row["days"] for row in report["yearly"]) == 800
    compounded = np.prod([1 + row["return"] for row in report["yearly"]])
    assert compounded == pytest.approx(np.prod(1 + net))
    assert "deflated_sharpe" not in summary(dates, net, bench)
