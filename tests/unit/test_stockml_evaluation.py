"""stockml.walk_forward, scoring, evaluation and evaluation_report: splits never leak, the leak
detector fires, metrics are right on known answers."""

import functools
import itertools
import json

import numpy as np
import pandas as pd
import pytest

from stockml.evaluation import correct_for_multiple_tests, evaluate_with_frames
from stockml.evaluation_report import format_table, plot_report
from stockml.features import Frame, as_day, build_features, frame_from_bars
from stockml.scoring import BASELINES, METRIC_KEYS, baselines, metrics, strategy_metrics
from stockml.walk_forward import (
    OutOfSample,
    choose_first_test_date,
    executed,
    walk_forward,
    walk_forward_splits,
)
from stockpred.market.sample_data import available, load_series
from tests.unit.test_stockml_features import changed_after

needs_sample = pytest.mark.skipif(not available(), reason="sample data (arch package) not installed")

FIRST_TEST = "2015-01-02"


@functools.cache
def spx() -> Frame:
    return frame_from_bars(load_series("SPX")).between("2011-01-01", "2016-12-31")


@functools.cache
def honest_and_leaky() -> tuple[OutOfSample, OutOfSample]:
    kw = {"first_test_date": FIRST_TEST, "refit_every": 63}
    return walk_forward(spx(), "logreg", **kw), walk_forward(spx(), "logreg", leak_shift=1, **kw)


# --- splits ---------------------------------------------------------------------------------------

DATES = pd.bdate_range("2010-01-01", periods=700).to_numpy().astype("datetime64[D]")


@pytest.mark.parametrize("window,rolling_days", [("expanding", None), ("rolling", 250), ("rolling", None)])
@pytest.mark.parametrize("refit_every", [1, 21, 63])
@pytest.mark.parametrize("gap", [1, 5])
def test_splits_are_time_ordered_gapped_and_cover_the_test_period(window, rolling_days, refit_every, gap):
    first_test = DATES[400]
    splits = walk_forward_splits(DATES, first_test_date=first_test, refit_every=refit_every, gap=gap,
                                 window=window, rolling_days=rolling_days)
    assert splits[0].test_start == 400 and splits[-1].test_end == len(DATES)
    for before, after in itertools.pairwise(splits):
        assert before.test_end == after.test_start
    for s in splits:
        test_dates, train_dates = DATES[s.test], DATES[s.train]
        assert 0 < len(test_dates) <= refit_every
        assert len(train_dates) > 0
        assert train_dates.max() < test_dates.min()
        assert s.test_start - (s.train_end - 1) >= gap
        if window == "expanding":
            assert s.train_start == 0
        else:
            assert s.train_end - s.train_start <= (rolling_days or 1260)


def test_expanding_training_windows_grow_and_rolling_ones_slide():
    kw = {"first_test_date": DATES[400], "refit_every": 50}
    expanding = walk_forward_splits(DATES, **kw)
    rolling = walk_forward_splits(DATES, window="rolling", rolling_days=300, **kw)
    assert [s.train_end - s.train_start for s in expanding] == sorted(s.train_end for s in expanding)
    assert all(s.train_end - s.train_start == 300 for s in rolling)
    assert [s.train_start for s in rolling] == sorted({s.train_start for s in rolling})


def test_splits_refuse_unsafe_or_impossible_settings():
    with pytest.raises(ValueError):
        walk_forward_splits(DATES, first_test_date=DATES[100], gap=0)
    with pytest.raises(ValueError):
        walk_forward_splits(DATES, first_test_date=DATES[0])
    with pytest.raises(ValueError):
        walk_forward_splits(DATES, first_test_date="2030-01-01")
    with pytest.raises(ValueError):
        walk_forward_splits(DATES[::-1], first_test_date=DATES[100])


# --- look-ahead and leak detection ---------------------------------------------------------------

@needs_sample
@pytest.mark.parametrize("kind", ["logreg", "hgb"])
def test_walk_forward_predictions_up_to_t_ignore_every_later_bar(kind):
    t = "2015-09-15"
    kw = {"first_test_date": FIRST_TEST, "refit_every": 63}
    original = walk_forward(spx(), kind, **kw).between(last=t)
    changed = walk_forward(changed_after(spx(), t), kind, **kw).between(last=t)
    for col in ("dates", "prob_up", "expected_return", "action"):
        np.testing.assert_array_equal(getattr(original, col), getattr(changed, col))
    assert len(original) > 100


@needs_sample
def test_leak_detector_a_one_day_leak_inflates_accuracy():
    honest, leaky = honest_and_leaky()
    acc_honest = metrics(honest)["accuracy"]
    acc_leaky = metrics(leaky)["accuracy"]
    assert acc_honest < 0.6
    assert acc_leaky > acc_honest + 0.15


@needs_sample
def test_honest_pipeline_features_use_only_data_cut_at_t():
    frame = spx()
    honest, _ = honest_and_leaky()
    full = build_features(frame)
    for t in honest.dates[::40]:
        i = int(np.searchsorted(frame.dates, t))
        np.testing.assert_allclose(full[i], build_features(frame.between(last=t))[-1], rtol=1e-12, atol=0)


@needs_sample
def test_oos_rows_carry_the_realised_next_day_outcome():
    honest, _ = honest_and_leaky()
    close = spx().close
    at = np.searchsorted(spx().dates, honest.dates)
    np.testing.assert_allclose(honest.realised_return, close[at + 1] / close[at] - 1)
    np.testing.assert_array_equal(honest.direction == 1, honest.realised_return > 0)
    assert set(honest.action) <= {"buy", "sell"}
    assert honest.dates[0] >= as_day(FIRST_TEST)


# --- metrics on known answers -------------------------------------------------------------------

def oos_frame(realised: np.ndarray, prob_up: np.ndarray, expected: np.ndarray | None = None) -> OutOfSample:
    return OutOfSample(
        dates=pd.bdate_range("2020-01-01", periods=len(realised)).to_numpy().astype("datetime64[D]"),
        prob_up=prob_up,
        expected_return=realised if expected is None else expected,
        action=np.where(prob_up > 0.5, "buy", "sell"),
        realised_return=realised,
        direction=(realised > 0).astype(int),
    )


def test_a_perfect_predictor_scores_perfectly_but_only_if_filled_at_the_close_it_read():
    realised = np.random.default_rng(1).normal(0.0005, 0.01, 500)
    perfect = oos_frame(realised, np.where(realised > 0, 0.99, 0.01))
    m = metrics(perfect, cost_bps=0, lag=0)
    assert m["accuracy"] == 1.0 and m["balanced_accuracy"] == 1.0
    assert m["brier"] == pytest.approx(0.0001)
    assert m["ic_mean"] > 0.8  # two probabilities only: ranks split the days in two, not perfectly
    assert m["max_drawdown"] == 0.0
    assert m["sharpe"] > 10
    assert set(METRIC_KEYS) <= set(m)
    # Traded a bar later (the default), knowing tomorrow's direction is worth nothing on iid days.
    late = metrics(perfect, cost_bps=0)
    assert late["accuracy"] == 1.0
    assert abs(late["sharpe"]) < 1.5 and late["max_drawdown"] < -0.05


def test_executed_positions_are_the_decisions_a_bar_late():
    decisions = np.array([1.0, 0.0, 0.5, 1.0])
    np.testing.assert_array_equal(executed(decisions), [0.0, 1.0, 0.0, 0.5])
    np.testing.assert_array_equal(executed(decisions, 0), decisions)
    np.testing.assert_array_equal(executed(decisions, 2), [0.0, 0.0, 1.0, 0.0])
    with pytest.raises(ValueError):
        executed(decisions, -1)


def test_ic_ranks_the_served_forecast_not_the_return_regressor():
    rng = np.random.default_rng(4)
    realised = rng.normal(0, 0.01, 1000)
    prob_informed = oos_frame(realised, 0.5 + 10 * realised, rng.normal(size=1000))
    regressor_informed = oos_frame(realised, rng.uniform(0.3, 0.7, 1000), realised)
    assert metrics(prob_informed)["ic_mean"] > 0.9
    assert abs(metrics(regressor_informed)["ic_mean"]) < 0.1


def test_a_coin_flip_is_near_chance_with_uninformative_ic():
    rng = np.random.default_rng(2)
    realised = rng.normal(0, 0.01, 2000)
    m = metrics(oos_frame(realised, rng.uniform(0.3, 0.7, 2000), rng.normal(size=2000)))
    assert abs(m["accuracy"] - 0.5) < 0.05
    assert abs(m["ic_mean"]) < 0.05
    assert m["brier"] > 0.25


def flat_bars(close: np.ndarray, index: pd.DatetimeIndex) -> Frame:
    dates = index.to_numpy().astype("datetime64[D]")
    return Frame(dates, close, close, close, close, np.full(len(close), 1e6))


def test_constant_up_series_buy_and_hold_has_no_drawdown():
    index = pd.bdate_range("2020-01-01", periods=300, name="date")
    close = 100 * 1.002 ** np.arange(300)
    df = flat_bars(close, index)
    base = baselines(df, index[60:-1].to_numpy())
    assert set(base) == set(BASELINES)
    assert base["buy_and_hold"]["max_drawdown"] == pytest.approx(0.0, abs=1e-12)
    days = 239
    growth = (1.002 - 0.001) * 1.002 ** (days - 1)
    assert base["buy_and_hold"]["days"] == days
    assert base["buy_and_hold"]["annual_return"] == pytest.approx(growth ** (252 / days) - 1, rel=1e-9)
    assert base["always_up"]["accuracy"] == 1.0
    assert base["sma_20_50"]["exposure"] == 1.0 and base["sma_20_50"]["turnover"] < 2
    assert base["buy_and_hold"]["accuracy"] is None


def test_yesterday_baseline_follows_yesterdays_sign():
    index = pd.bdate_range("2020-01-01", periods=200, name="date")
    close = 100 * np.cumprod(np.where(np.arange(200) % 2 == 0, 1.01, 1 / 1.01))
    df = flat_bars(close, index)
    base = baselines(df, index[60:-1].to_numpy())
    assert base["yesterday"]["accuracy"] == 0.0
    assert base["yesterday"]["turnover"] == pytest.approx(252, rel=0.01)


def test_costs_take_about_two_costs_per_round_trip():
    position = np.array([1.0, 0.0] * 50)
    flat_market = np.zeros(len(position))
    m = strategy_metrics(position, flat_market, cost_bps=10)
    assert m["total_return"] == pytest.approx(0.999 ** 100 - 1)
    assert m["total_return"] == pytest.approx(-50 * 2 * 0.001, rel=0.06)
    assert m["turnover"] == pytest.approx(252)

    realised = np.random.default_rng(3).normal(0.0005, 0.01, 100)
    gross = strategy_metrics(position, realised, cost_bps=0)["total_return"]
    net = strategy_metrics(position, realised, cost_bps=10)["total_return"]
    assert np.log1p(gross) - np.log1p(net) == pytest.approx(100 * 0.001, rel=0.01)


# --- report -------------------------------------------------------------------------------------

@functools.cache
def small_report() -> tuple:
    return evaluate_with_frames(spx(), symbol="SPX", kinds=("logreg",), first_test_date=FIRST_TEST,
                                refit_every=63, resamples=300)


@needs_sample
def test_evaluate_report_is_json_and_renders(tmp_path):
    report, series = small_report()
    json.dumps(report, allow_nan=False)
    assert report["out_of_sample"]["start"] >= FIRST_TEST
    assert report["out_of_sample"]["days"] == len(series.models["logreg"])
    assert set(report["baselines"]) == set(BASELINES)
    assert set(report["sizing"]) == {"buy_and_hold", "vol_target", "sized_logreg"}
    assert set(report["volatility"]) == {"naive", "garch", "gjr", "har", "selected"}
    table = format_table(report)
    for name in ("logreg", *BASELINES, "vol_target", "sized_logreg", "gjr", "QLIKE 1d", "90% interval"):
        assert name in table
    for name in ("Sortino", "DSR (73 trials)", "return by calendar year", "risk timing", "edge of logreg"):
        assert name in table, name
    for name in ("vol_target", "sized_logreg"):
        m = report["sizing"][name]
        for key in ("sortino", "calmar", "max_drawdown_days", "information_ratio", "beta", "alpha", "psr",
                    "deflated_sharpe", "yearly"):
            assert key in m, key
        assert [row["year"] for row in m["yearly"]] == [2015, 2016]
        assert 0 <= m["deflated_sharpe"] <= m["psr"] <= 1  # more trials, a higher bar
    png = plot_report(report, series, tmp_path / "report.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@needs_sample
def test_edge_is_direction_skill_over_vol_targeting_with_a_corrected_p_below_five_percent():
    report, _ = small_report()
    direction = report["sizing"]["sized_logreg"]["vs_vol_target"]
    assert report["edge"]["logreg"] is (direction["p_value_corrected"] < 0.05)
    low, high = direction["interval_90"]
    assert low <= direction["difference"] <= high
    assert "plain volatility targeting" in direction["words"]
    # One family of 4 tests (vol_target and sized_logreg against holding, sized_logreg against
    # vol_target, logreg long/flat against holding), each p corrected upwards.
    assert direction["tests_in_family"] == 4
    for test in (direction, report["sizing"]["vol_target"]["vs_buy_and_hold"],
                 report["models"]["logreg"]["vs_buy_and_hold"]):
        assert test["p_value_corrected"] >= test["p_value"]
    timing = report["risk_timing"]
    assert timing["edge"] is (report["sizing"]["vol_target"]["vs_buy_and_hold"]["p_value_corrected"] < 0.05)
    assert "holding the index" in timing["words"]
    assert report["protocol"]["lag"] == 1 and report["protocol"]["trade_cost_bps"] == 12.5


def test_correction_spans_the_symbols_of_one_run():
    def report(symbol: str, p_direction: float) -> dict:
        def t(p: float) -> dict:
            return {"p_value": p, "against": "x"}
        return {"symbol": symbol, "models": {"logreg": {"vs_buy_and_hold": t(0.5)}},
                "sizing": {"vol_target": {"vs_buy_and_hold": t(0.5)},
                           "sized_logreg": {"vs_buy_and_hold": t(0.5), "vs_vol_target": t(p_direction)}}}
    alone = [report("A", 0.01)]
    assert correct_for_multiple_tests(alone) == 4
    assert alone[0]["edge"]["logreg"] is True  # 4 x 0.01
    together = [report("A", 0.01), report("B", 0.9), report("C", 0.9)]
    assert correct_for_multiple_tests(together) == 12
    assert together[0]["edge"]["logreg"] is False  # 12 x 0.01
    assert together[0]["sizing"]["sized_logreg"]["vs_vol_target"]["p_value_corrected"] == pytest.approx(0.12)


@needs_sample
def test_sized_exposures_stay_within_limits_and_follow_volatility():
    _, series = small_report()
    for name, pos in series.positions.items():
        assert pos.min() >= 0 and pos.max() <= 1.0, name
    exposure = series.positions["vol_target"]
    forecast = series.volatility[21]
    calm, stormy = forecast < np.quantile(forecast, 0.2), forecast > np.quantile(forecast, 0.8)
    assert exposure[calm].mean() > exposure[stormy].mean() + 0.05
    assert np.corrcoef(exposure, forecast)[0, 1] < -0.5


@needs_sample
def test_sized_exposure_at_t_ignores_every_later_bar():
    t = "2015-09-15"
    kw = {"kinds": ("logreg",), "first_test_date": FIRST_TEST, "refit_every": 63, "resamples": 50}
    _, original = evaluate_with_frames(spx(), symbol="SPX", **kw)
    _, cut = evaluate_with_frames(spx().between(last=t), symbol="SPX", **kw)
    n = int(np.searchsorted(original.dates, as_day(t), side="right"))
    assert n > 100
    for name, pos in cut.positions.items():
        np.testing.assert_allclose(pos[:n - 1], original.positions[name][:n - 1], rtol=1e-12, err_msg=name)
    np.testing.assert_allclose(cut.volatility[1][:n - 1], original.volatility[1][:n - 1], rtol=1e-12)


@needs_sample
def test_a_target_shifted_one_day_further_than_the_features_reach_gives_chance_level_skill():
    # Placebo: features lagged one day (the label is then two days after the data) carry nothing.
    placebo = walk_forward(spx(), "logreg", first_test_date=FIRST_TEST, refit_every=63, leak_shift=-1)
    assert abs(metrics(placebo)["balanced_accuracy"] - 0.5) < 0.04


# --- execution lag and short histories --------------------------------------------------------------

def planted_same_close_edge(days: int = 1600, seed: int = 8) -> Frame:
    """Daily returns r_t = e_t - 0.6 e_(t-1): today's return predicts tomorrow's (autocorrelation
    -0.44 at one day) and nothing after, so only a fill at the close that was read can use it."""
    e = np.random.default_rng(seed).normal(0, 0.01, days + 1)
    returns = e[1:] - 0.6 * e[:-1] + 0.0003
    close = 100 * np.cumprod(1 + returns)
    index = pd.bdate_range("2012-01-02", periods=days, name="date")
    return flat_bars(close, index)


def test_a_planted_same_close_edge_is_gone_once_traded_a_bar_later():
    frame = planted_same_close_edge()
    kw = {"symbol": "MA1", "kinds": ("logreg",), "refit_every": 63, "resamples": 300,
          "vol_kinds": ("naive", "garch")}
    same_close, _ = evaluate_with_frames(frame, lag=0, **kw)
    traded_late, _ = evaluate_with_frames(frame, **kw)
    assert same_close["edge"]["logreg"] is True
    assert same_close["sizing"]["sized_logreg"]["vs_vol_target"]["difference"] > 1.0
    assert traded_late["edge"]["logreg"] is False
    late = traded_late["sizing"]["sized_logreg"]["vs_vol_target"]
    assert late["difference"] < 0.3 and late["p_value_corrected"] > 0.2
    assert traded_late["models"]["logreg"]["accuracy"] > 0.6  # the skill is real, just not tradeable


def test_a_stock_listed_after_the_first_test_date_evaluates_from_its_own_history():
    frame = planted_same_close_edge(days=5 * 252, seed=9)  # five years, from 2012
    report, _ = evaluate_with_frames(frame, symbol="NEW", kinds=("logreg",), first_test_date="2009-02-09",
                                     refit_every=63, resamples=100, vol_kinds=("naive",))
    protocol = report["protocol"]
    usable_start = np.datetime64(protocol["train_start"])
    assert np.busday_count(usable_start, np.datetime64(protocol["first_test_date"])) == 504
    assert protocol["first_test_date_reason"].startswith("moved from 2009-02-09")
    assert report["out_of_sample"]["days"] > 600


def test_first_test_date_choice_says_why_and_refuses_too_little_history():
    usable = pd.bdate_range("2020-01-01", periods=700).to_numpy().astype("datetime64[D]")
    date, why = choose_first_test_date(usable, None, min_train_days=504)
    assert date == usable[504] and "504 days of history" in why
    assert choose_first_test_date(usable, usable[550]) == (usable[550], "as asked")
    with pytest.raises(ValueError, match="fewer than 126 out-of-sample days"):
        choose_first_test_date(usable, usable[650])
    with pytest.raises(ValueError, match="need at least 630 days"):
        choose_first_test_date(usable[:629])
