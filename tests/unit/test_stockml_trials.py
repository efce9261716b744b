"""stockml.trials: a symbol's edge is judged on a growing record at most every 63 days, each
judgement at a level that spends part of 5%, and every evaluation is counted."""

import math

import numpy as np
import pytest

from stockml import trials
from stockml.edge import sharpe_difference_test


def test_the_levels_of_successive_judgements_sum_to_five_percent():
    assert trials.alpha_for(1) == pytest.approx(0.05 * 6 / math.pi ** 2)
    assert trials.alpha_for(2) == pytest.approx(trials.alpha_for(1) / 4)
    assert sum(trials.alpha_for(k) for k in range(1, 100_000)) == pytest.approx(0.05, rel=1e-4)
    with pytest.raises(ValueError):
        trials.alpha_for(0)


def test_a_verdict_stands_until_the_record_has_grown_63_days_and_every_evaluation_counts():
    record = trials.empty("SPX")
    record, first = trials.judge(record, record_end="2018-01-02", record_days=1000, p_value=0.01,
                                 configurations=73, now="t1")
    assert first["rejudged"] and first["number"] == 1 and first["edge"] is True  # 0.01 < 0.0304
    record, same = trials.judge(record, record_end="2018-01-03", record_days=1001, p_value=0.9,
                                configurations=73, now="t2")
    assert not same["rejudged"] and same["edge"] is True and same["judged_through"] == "2018-01-02"
    assert trials.is_due(record, 1062) is False and trials.is_due(record, 1063) is True
    record, second = trials.judge(record, record_end="2018-04-05", record_days=1063, p_value=0.01,
                                  configurations=73, now="t3")
    assert second["rejudged"] and second["number"] == 2
    assert second["edge"] is False  # 0.01 is not below 0.0304 / 4
    assert record["configurations"] == 3 * 73 and record["evaluations"] == 3
    assert [j["number"] for j in record["judgements"]] == [1, 2]
    assert second["configurations_tried"] == 219 and second["next_judgement_after_days"] == 1126


def test_an_undefined_p_value_is_no_edge():
    _, verdict = trials.judge(trials.empty("X"), record_end="d", record_days=500, p_value=float("nan"),
                              configurations=1)
    assert verdict["edge"] is False


def garch(n: int, rng: np.random.Generator) -> np.ndarray:
    omega, alpha, beta = 2e-6, 0.08, 0.9
    z = rng.standard_normal(n + 300)
    variance, out = omega / (1 - alpha - beta), np.empty(n + 300)
    for t in range(len(z)):
        out[t] = math.sqrt(variance) * z[t]
        variance = omega + alpha * out[t] ** 2 + beta * variance
    return out[300:] + 0.0004


def year_of_retrains(rng: np.random.Generator, skill: float, first_record: int = 1250,
                     days: int = 252) -> list[bool]:
    """`edge` on each day of a year of daily retrains: plain volatility targeting's returns, and
    the same scaled by a conviction (strength 4) whose probability leans on the next return with
    `skill` (0: none). Each retrain's record is one day longer; p is only computed when due."""
    n = first_record + days
    vol_target = garch(n, rng)
    lean = skill * np.sign(vol_target - 0.0004) + rng.normal(0, 0.02, n)
    sized = vol_target * np.maximum(0.0, 1 + 4 * 2 * lean)
    record, shown = trials.empty("SIM"), []
    for day in range(days):
        length = first_record + day
        p_value = None
        if trials.is_due(record, length):
            p_value = sharpe_difference_test(sized[:length], vol_target[:length], resamples=299,
                                             seed=day)["p_value"]
        record, verdict = trials.judge(record, record_end=str(day), record_days=length, p_value=p_value,
                                       configurations=73)
        shown.append(verdict["edge"])
    return shown


@pytest.mark.slow
def test_a_no_skill_symbol_shows_edge_on_at_most_5_percent_of_its_days_over_a_year_of_retrains():
    """The uncorrected bootstrap p stands in for the Holm-corrected one, which is never smaller:
    the bound holds a fortiori for what training does."""
    rng = np.random.default_rng(2026)
    symbols = 150
    shown = np.array([year_of_retrains(rng, skill=0.0) for _ in range(symbols)])
    share_of_days, ever = shown.mean(), shown.any(axis=1).mean()
    skilled = np.array([year_of_retrains(rng, skill=0.01) for _ in range(30)])
    print(f"no skill: edge shown on {share_of_days:.2%} of symbol-days, ever by {ever:.1%} of "
          f"{symbols} symbols; planted skill: edge on {skilled.mean():.1%} of days, "
          f"ever by {skilled.any(axis=1).mean():.0%}")
    assert share_of_days <= 0.05
    assert ever <= 0.08  # at most 5% in expectation (union bound); 150 symbols leave some noise
    assert skilled.mean() > 0.5
