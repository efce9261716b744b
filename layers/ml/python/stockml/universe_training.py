"""Training a universe's ranker and publishing the day's ranking (the Retrain function's and
`stockpred train-universe`'s job; the API only reads what this writes).

One run: load the universe's aligned panel, evaluate the ranker walk-forward (`stockml.ranking`:
the out-of-sample record, and the mean next-day excess return of each score decile), fit it on
every trainable day, score the members on the panel's last day and publish the ranking
(`registry.UniverseRankings`). A member's `expected_excess_return` is the mean next-day return
over the equal-weight universe that stocks in its score decile earned out of sample: a calibrated
number from the record, not the model's raw score, which is only a rank.

`rank_and_publish` is the whole job: the universe's trial record (stockml.trials) gives the
deflated Sharpe ratio every configuration tried on the universe before, and the ranking's `edge`
is judged as a symbol's is, at most every 63 trading days of new record and at a level that
spends 5% over all judgements; a retrain in between keeps the last verdict.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from stockml import trials
from stockml.cross_section import average_ranks
from stockml.panel import Panel
from stockml.ranking import (
    DECILES,
    DEFAULT_REFIT_EVERY,
    RankingData,
    configurations,
    evaluate_universe_with_series,
    fit_ranker,
    ranking_data,
)
from stockml.registry import UniverseRankings

Progress = Callable[[int, int], None]


def todays_ranking(data: RankingData, symbols: tuple[str, ...], model: Any,
                   expected_by_decile: list[float | None]) -> list[dict[str, Any]]:
    """The members with every feature on the panel's last day, best first: rank (1 = best), of
    how many, percentile (100 = best), decile (10 = best), the model's score and the decile's
    out-of-sample mean excess return. ValueError when fewer than two members can be ranked."""
    last = len(data.dates) - 1
    present = np.flatnonzero(data.complete[last])
    if len(present) < 2:
        raise ValueError(f"only {len(present)} member(s) have every feature on {data.dates[last]}: "
                         "nothing to rank")
    score = np.asarray(model.predict(data.features[last, present]), dtype=float)
    ascending, count = average_ranks(score[None, :])
    ascending, n = ascending[0], int(count[0])
    bucket = np.floor((ascending - 1) * DECILES / n).astype(int)  # as stockml.ranking.decile_returns
    order = sorted(range(len(present)), key=lambda i: (-score[i], symbols[present[i]]))
    return [{
        "symbol": symbols[present[i]],
        "rank": position,
        "of": n,
        "percentile": round(100 * (ascending[i] - 0.5) / n, 1),
        "decile": int(bucket[i]) + 1,
        "score": round(float(score[i]), 6),
        "expected_excess_return": expected_by_decile[bucket[i]],
    } for position, i in enumerate(order, start=1)]


def rank_and_publish(name: str, panel: Panel, store: UniverseRankings, *, kind: str = "ridge",
                     horizon: int = 1, missing: dict[str, str] | None = None,
                     progress: Progress | None = None) -> dict[str, Any]:
    """Trains the universe's ranker, judges its edge on the universe's trial record, publishes the
    ranking and saves the record; returns the ranking as published."""
    before = store.trials(name) or trials.empty(name)
    ranking = train_universe(name, panel, kind=kind, horizon=horizon, missing=missing, progress=progress,
                             prior_trials=before.get("configurations", 0))
    record = ranking["record"]
    after, verdict = trials.judge(before, record_end=record["out_of_sample"]["end"],
                                  record_days=record["out_of_sample"]["days"], p_value=record["p_value"],
                                  configurations=record["trials"])
    ranking["record"] = {**record, "edge": bool(verdict["edge"]), "edge_judgement": verdict}
    # The count first: if publishing then fails, the trials are over-counted, never forgotten.
    store.save_trials(name, after)
    store.publish(name, ranking)
    return ranking


def train_universe(name: str, panel: Panel, *, kind: str = "ridge", horizon: int = 1,
                   refit_every: int = DEFAULT_REFIT_EVERY, missing: dict[str, str] | None = None,
                   progress: Progress | None = None, prior_trials: int = 0) -> dict[str, Any]:
    """The ranking document for `panel`'s last day: the walk-forward record of `kind`, the model
    fitted on every trainable day, and every rankable member's place (see the module docstring).
    Its `edge` is this run's test alone; `rank_and_publish` judges it on the universe's record."""
    started = time.perf_counter()
    data = ranking_data(panel, horizon)
    report, _ = evaluate_universe_with_series(panel, kinds=(kind,), horizon=horizon,
                                              refit_every=refit_every, data=data, progress=progress,
                                              prior_trials=prior_trials)
    grid = configurations(kind)
    model, params = fit_ranker(kind, data, len(data.dates), grid)
    record = report["models"][kind]
    expected = [None if v is None else round(v, 6) for v in record["deciles"]]
    ranking = todays_ranking(data, panel.symbols, model, expected)
    long_only = record["portfolios"]["long_only"]
    trained_days = np.flatnonzero(data.trainable.any(axis=1))
    ranked = {r["symbol"] for r in ranking}
    return {
        "universe": name,
        "as_of": str(panel.dates[-1]),
        "horizon_days": horizon,
        "model": {
            "kind": kind,
            "params": params,
            "trained_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "trained_through": str(data.dates[trained_days[-1]]) if len(trained_days) else None,
            "coefficients": _coefficients(model, report["protocol"]["features"]),
            "seconds": round(time.perf_counter() - started, 1),
        },
        "record": {
            "out_of_sample": report["out_of_sample"],
            "ic": record["ic"],
            "deciles": expected,
            "decile_spread": record["decile_spread"],
            "long_only": {key: long_only.get(key) for key in ("sharpe", "annual_return", "turnover",
                                                              "max_drawdown", "deflated_sharpe")},
            "equal_weight": {key: report["equal_weight"].get(key) for key in ("sharpe", "annual_return")},
            "p_value": long_only["vs_equal_weight"]["p_value_corrected"],
            "edge": record["edge"],
            "trials": report["trials"],
            "trials_counted": report["trials_counted"],
        },
        "expected_excess_return_means": (
            f"the mean {horizon}-day return over the universe's equal-weight average that members in "
            "the same score decile earned out of sample (walk-forward, costs not taken off)"
            if horizon > 1 else
            "the mean next-day return over the universe's equal-weight average that members in the "
            "same score decile earned out of sample (walk-forward, costs not taken off)"),
        "ranking": ranking,
        "not_ranked": sorted(set(panel.symbols) - ranked),
        "left_out": dict(missing or {}),
    }


def _coefficients(model: Any, features: list[str]) -> dict[str, float] | None:
    """A linear ranker's weight on each (rank-normalised) feature; None for trees."""
    coef = getattr(model, "coef_", None)
    if coef is None:
        return None
    return {name: round(float(c), 6) for name, c in zip(features, np.ravel(coef), strict=True)}
