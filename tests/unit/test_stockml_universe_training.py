"""A universe's ranking for the day: the members in the order the trained ranker gives, with the
calibrated expected excess return of their decile, and the planted truth recovered."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest

from stockml.cross_section import average_ranks
from stockml.panel import Panel
from stockml.ranking import ranking_data
from stockml.synthetic import synthetic_panel
from stockml.universe_training import todays_ranking, train_universe


@functools.cache
def trained(reversal: float) -> tuple[dict, Panel]:
    planted = synthetic_panel(80, 900, seed=3, reversal=reversal, listings=0.1, delistings=0.1)
    return train_universe("planted", planted.panel, refit_every=126,
                          missing={"GONE": "UnknownSymbol: no data"}), planted.panel


def test_the_ranking_orders_every_rankable_member_best_first() -> None:
    doc, panel = trained(0.1)
    json.dumps(doc, allow_nan=False)
    ranking = doc["ranking"]
    assert doc["as_of"] == str(panel.dates[-1]) and doc["universe"] == "planted"
    listed_today = {s for s, c in zip(panel.symbols, panel.close[-1], strict=True) if np.isfinite(c)}
    assert {r["symbol"] for r in ranking} <= listed_today
    assert len(ranking) >= 0.8 * len(listed_today)
    assert sorted(doc["not_ranked"]) == sorted(set(panel.symbols) - {r["symbol"] for r in ranking})
    assert [r["rank"] for r in ranking] == list(range(1, len(ranking) + 1))
    assert all(r["of"] == len(ranking) for r in ranking)
    scores = [r["score"] for r in ranking]
    assert scores == sorted(scores, reverse=True)
    percentiles = [r["percentile"] for r in ranking]
    assert percentiles == sorted(percentiles, reverse=True) and 0 < percentiles[-1] < percentiles[0] < 100
    assert ranking[0]["decile"] == 10 and ranking[-1]["decile"] == 1
    assert doc["left_out"] == {"GONE": "UnknownSymbol: no data"}


def test_the_ranking_follows_the_planted_reversal_and_its_deciles_are_calibrated() -> None:
    doc, panel = trained(0.1)
    record = doc["record"]
    assert record["ic"]["ic_mean"] > 0.02 and record["ic"]["t_newey_west"] > 2
    deciles = record["deciles"]
    assert deciles[-1] > deciles[0]  # out of sample, the top decile beat the bottom one
    top, bottom = doc["ranking"][0], doc["ranking"][-1]
    assert top["expected_excess_return"] == deciles[9] and bottom["expected_excess_return"] == deciles[0]
    # Reversal: yesterday's losers rank high. The ranking against the last day's return.
    last_return = panel.returns()[-1]
    column = {s: i for i, s in enumerate(panel.symbols)}
    pairs = np.array([(r["percentile"], last_return[column[r["symbol"]]]) for r in doc["ranking"]
                      if np.isfinite(last_return[column[r["symbol"]]])])
    ranks, _ = average_ranks(pairs.T)
    rho = np.corrcoef(ranks[0], ranks[1])[0, 1]
    assert rho < -0.3, rho
    assert doc["model"]["coefficients"] is not None and doc["model"]["kind"] == "ridge"


def test_no_planted_effect_claims_no_edge() -> None:
    doc, _ = trained(0.0)
    assert doc["record"]["edge"] is False
    assert abs(doc["record"]["ic"]["t"]) < 2


def test_a_day_with_fewer_than_two_rankable_members_is_refused() -> None:
    planted = synthetic_panel(12, 400, seed=1)
    data = ranking_data(planted.panel, 1)
    blanked = data.complete.copy()
    blanked[-1, 1:] = False
    data = type(data)(data.dates, data.features, data.target, blanked, data.horizon)

    class Model:
        def predict(self, x: np.ndarray) -> np.ndarray:
            return x.sum(axis=1)

    with pytest.raises(ValueError, match="nothing to rank"):
        todays_ranking(data, planted.panel.symbols, Model(), [0.0] * 10)
