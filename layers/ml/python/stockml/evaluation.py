"""Honest out-of-sample evaluation of a symbol's direction models, and the multiple-testing correction.

`evaluate` runs the walk-forward protocol (stockml.walk_forward) for each model, scores its
out-of-sample predictions beside simple baselines on the same days (stockml.scoring), scores the
volatility forecasts and sizes the strategies with choices made on past days only
(stockml.sizing_selection), and tests them. Each sized strategy is tested against buy and hold
and each sized model against plain volatility targeting with a studentised block bootstrap
(stockml.edge), as is each model's long/flat strategy against buy and hold; every p-value of an
evaluation is Holm-corrected as one family (`correct_for_multiple_tests`, also across the symbols
of one run). `edge` is direction skill: a model's sized strategy beat plain volatility targeting
with a corrected p < 0.05. What volatility targeting does against holding is "risk timing",
reported on its own. The tables and the chart are in stockml.evaluation_report.
Training-side tooling: numpy and scikit-learn, no pandas.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from stockml.edge import DEFAULT_RESAMPLES, EDGE_P_VALUE, holm, plain_words, sharpe_difference_test
from stockml.features import FEATURE_NAMES, Frame, as_day, build_features, build_targets, usable_rows
from stockml.models import MODEL_KINDS, make_model
from stockml.performance import summary
from stockml.scoring import baselines, json_safe, metrics, strategy_metrics, strategy_returns
from stockml.sizing import CONVICTION_STRENGTHS, DEFAULT_MAX_EXPOSURE, SIZING_HORIZONS, TARGET_MULTIPLES
from stockml.sizing_selection import (
    choice_summary,
    decision_rows,
    select_volatility_kind,
    size_strategies,
    volatility_scores,
)
from stockml.volatility import HORIZONS, VOLATILITY_KINDS, percent_returns
from stockml.volatility_fit import walk_forward_volatility
from stockml.walk_forward import (
    DEFAULT_COST_BPS,
    DEFAULT_MIN_TRAIN_DAYS,
    DEFAULT_SPREAD_BPS,
    EXECUTION_LAG,
    OutOfSample,
    Progress,
    Window,
    choose_first_test_date,
    executed,
    walk_forward,
    walk_forward_splits,
)

HOLDING = "holding the index"
VOL_TARGETING = "plain volatility targeting"
VOL_REFIT_EVERY = 63
VOL_MIN_TRAIN = 252


@dataclass
class Evaluation:
    """Series behind a report, for `plot_report`: each model's out-of-sample rows, and the sized
    strategies' positions and next-day returns on the same days."""

    models: dict[str, OutOfSample]
    dates: np.ndarray
    realised: np.ndarray
    positions: dict[str, np.ndarray]
    volatility: dict[int, np.ndarray]


def evaluate_with_frames(frame: Frame, *, symbol: str, kinds: Sequence[str] = MODEL_KINDS,
                         first_test_date: Any = None, refit_every: int = 21, gap: int = 1,
                         window: Window = "expanding", cost_bps: float = DEFAULT_COST_BPS,
                         spread_bps: float = DEFAULT_SPREAD_BPS, lag: int = EXECUTION_LAG,
                         min_train_days: int = DEFAULT_MIN_TRAIN_DAYS,
                         vol_kinds: Sequence[str] = VOLATILITY_KINDS, vol_refit_every: int = VOL_REFIT_EVERY,
                         max_exposure: float = DEFAULT_MAX_EXPOSURE, resamples: int = DEFAULT_RESAMPLES,
                         progress: Progress | None = None) -> tuple[dict[str, Any], Evaluation]:
    """Like `evaluate`, also returning the series behind it (for `plot_report`)."""
    usable = frame.dates[usable_rows(build_features(frame), build_targets(frame))]
    first_test_date, first_test_reason = choose_first_test_date(usable, first_test_date, min_train_days)
    trade_cost = cost_bps + spread_bps / 2
    n_folds = len(walk_forward_splits(usable, first_test_date=first_test_date, refit_every=refit_every,
                                      gap=gap, window=window))
    first_row = int(np.searchsorted(frame.dates, usable[np.searchsorted(usable, as_day(first_test_date))]))
    vol_start = max(min(VOL_MIN_TRAIN, first_row), 2)
    vol_folds = list(range(vol_start, len(frame), vol_refit_every))
    total = n_folds * len(kinds) + len(vol_folds) * len(vol_kinds)

    frames: dict[str, OutOfSample] = {}
    for i, kind in enumerate(kinds):
        step = None
        if progress:
            def step(done: int, _total: int, i: int = i) -> None:
                progress(i * n_folds + done, total)
        frames[kind] = walk_forward(frame, kind, first_test_date=first_test_date, refit_every=refit_every,
                                    gap=gap, window=window, progress=step)
    oos_dates = next(iter(frames.values())).dates
    if any(not np.array_equal(f.dates, oos_dates) for f in frames.values()):
        raise RuntimeError("models were evaluated on different days")

    returns = percent_returns(frame.close)
    vol_step = (lambda done, _t: progress(n_folds * len(kinds) + done, total)) if progress else None
    forecasts = walk_forward_volatility(returns, vol_folds, kinds=vol_kinds, horizons=HORIZONS,
                                        progress=vol_step)
    rows = np.searchsorted(frame.dates, oos_dates)
    first_judged = int(rows[0])
    selected = {h: np.full(len(frame), np.nan) for h in HORIZONS}
    decisions = decision_rows(first_judged, vol_start, len(frame), refit_every)
    for d, end in zip(decisions, [*decisions[1:], len(frame)], strict=True):
        kind = select_volatility_kind(forecasts, returns, vol_start, d)
        for h in HORIZONS:
            selected[h][d:end] = forecasts[kind][h][d:end]
    vol_scores = volatility_scores({**forecasts, "selected": selected}, returns, rows)

    prob_up = {}
    for kind, oos in frames.items():
        p = np.full(len(frame), np.nan)
        p[rows] = oos.prob_up
        prob_up[kind] = p
    sized = size_strategies(frame, forecasts, returns, prob_up, start=vol_start, first_judged=first_judged,
                            refit_every=refit_every, cost_bps=trade_cost, max_exposure=max_exposure, lag=lag)
    realised = sized.next_return[rows]
    held = {name: executed(pos, lag)[rows] for name, pos in sized.positions.items()}
    held = {"buy_and_hold": np.ones(len(rows)), **held}

    models = {kind: metrics(oos, cost_bps=trade_cost, lag=lag) for kind, oos in frames.items()}
    base = baselines(frame, oos_dates, cost_bps=trade_cost, lag=lag)
    net = {name: strategy_returns(pos, realised, trade_cost) for name, pos in held.items()}

    def test(name: str, against: str) -> dict[str, Any]:
        result = sharpe_difference_test(net[name], net[against], resamples=resamples)
        return {**result, "against": HOLDING if against == "buy_and_hold" else VOL_TARGETING}

    trials = configurations_tried(len(kinds), len(vol_kinds))

    def performance(name: str) -> dict[str, Any]:
        """Sortino, Calmar, drawdown duration, information ratio, beta and alpha against holding,
        PSR and the deflated Sharpe ratio for this evaluation's trials, and a row per year."""
        return summary(oos_dates, net[name], net["buy_and_hold"], trials=trials)

    sizing = {}
    for name, pos in held.items():
        row: dict[str, Any] = strategy_metrics(pos, realised, trade_cost)
        row.update({k: v for k, v in performance(name).items() if k not in row})
        if name != "buy_and_hold":
            row["vs_buy_and_hold"] = test(name, "buy_and_hold")
        if name.startswith("sized_"):
            row["vs_vol_target"] = test(name, "vol_target")
        if name in sized.choices:
            row["choices"] = choice_summary(sized.choices[name], frame.dates, first_judged)
        sizing[name] = row
    for kind, oos in frames.items():
        long_flat = executed(oos.buy.astype(float), lag)
        net[f"long_flat_{kind}"] = strategy_returns(long_flat, realised, trade_cost)
        models[kind]["vs_buy_and_hold"] = test(f"long_flat_{kind}", "buy_and_hold")
        models[kind].update({k: v for k, v in performance(f"long_flat_{kind}").items()
                             if k not in models[kind]})
    report = {
        "symbol": symbol,
        "out_of_sample": {"start": str(oos_dates[0]), "end": str(oos_dates[-1]), "days": len(oos_dates)},
        "protocol": {
            "target": "next-day close-to-close direction and return",
            "validation": f"walk-forward, {window} window, refit every {refit_every} trading days, "
                          f"last training row {gap} day(s) before each fold",
            "first_test_date": str(as_day(first_test_date)),
            "first_test_date_reason": first_test_reason,
            "min_train_days": min_train_days,
            "train_start": str(usable[0]),
            "window": window, "refit_every": refit_every, "gap": gap,
            "folds": math.ceil(len(oos_dates) / refit_every),
            "strategy": "long on buy, flat on sell",
            "sized_strategy": "exposure = target volatility / forecast volatility, in [0, max exposure], "
                              "optionally scaled by the direction model's conviction; volatility model, "
                              "target, horizon and conviction chosen every refit on past days only",
            "execution": f"a decision made from close t is filled at close t+{lag} and earns the returns "
                         "after it" if lag else "filled at the very close the decision was made from "
                         "(lag 0: not tradeable, for research only)",
            "lag": lag,
            "max_exposure": max_exposure,
            "cost_bps": cost_bps,
            "spread_bps": spread_bps,
            "trade_cost_bps": trade_cost,
            "cost": "cost_bps plus half the spread per unit of turnover (|change of exposure|)",
            "volatility": f"{', '.join(vol_kinds)} refitted every {vol_refit_every} trading days on the "
                          f"returns before each fold (the first from {frame.dates[vol_start]}), "
                          "forecasts updated daily",
            "edge_test": "studentised circular block bootstrap of paired daily returns (Ledoit-Wolf), "
                         "one-sided p of 'Sharpe not above the benchmark', 90% interval; every p of the "
                         "evaluation Holm-corrected as one family; edge = a sized model beats plain "
                         "volatility targeting with a corrected p < 0.05",
            "resamples": resamples,
            "configurations": trials,
            "features": list(FEATURE_NAMES),
        },
        "params": {kind: make_model(kind).params for kind in kinds},
        "models": models,
        "baselines": base,
        "volatility": vol_scores,
        "sizing": sizing,
    }
    correct_for_multiple_tests([report])
    series = Evaluation(frames, oos_dates, realised, held, {h: selected[h][rows] for h in HORIZONS})
    return json_safe(report), series


def configurations_tried(models: int, volatility_models: int) -> int:
    """Strategies one evaluation tries, as trials for the deflated Sharpe ratio: every
    volatility model x target multiple x horizon for plain volatility targeting, and the same with
    each non-zero conviction strength per direction model; plus each model's long/flat rule."""
    rules = volatility_models * len(TARGET_MULTIPLES) * len(SIZING_HORIZONS)
    return rules * (1 + models * (len(CONVICTION_STRENGTHS) - 1)) + models


def _tests(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every hypothesis test of a report, by a name unique across symbols."""
    found = {}
    for name, row in report["sizing"].items():
        for key in ("vs_buy_and_hold", "vs_vol_target"):
            if row.get(key):
                found[f"{report['symbol']}/{name}/{key}"] = row[key]
    for kind, row in report["models"].items():
        if row.get("vs_buy_and_hold"):
            found[f"{report['symbol']}/{kind}/long_flat/vs_buy_and_hold"] = row["vs_buy_and_hold"]
    return found


def correct_for_multiple_tests(reports: list[dict[str, Any]]) -> int:
    """Holm-corrects every p-value of `reports` (one or several symbols' evaluations) as one
    family, in place: each test gets `p_value_corrected`, `tests_in_family`, `edge` (corrected
    p < 0.05) and its `words`; each report its `edge` per model (direction skill: the sized model
    against plain volatility targeting) and its `risk_timing` (plain volatility targeting against
    holding). Returns the family's size."""
    family = {name: t for report in reports for name, t in _tests(report).items()}
    corrected = holm({name: t.get("p_value") for name, t in family.items()})
    size = sum(p is not None for p in corrected.values())
    for name, t in family.items():
        t["p_value_corrected"] = corrected[name]
        t["tests_in_family"] = size
        t["edge"] = corrected[name] is not None and corrected[name] < EDGE_P_VALUE
        t["words"] = plain_words(t, t.get("against", HOLDING))
    for report in reports:
        report["edge"] = {kind: bool(report["sizing"][f"sized_{kind}"]["vs_vol_target"]["edge"])
                          for kind in report["models"]}
        timing = report["sizing"]["vol_target"]["vs_buy_and_hold"]
        report["risk_timing"] = {"edge": bool(timing["edge"]), "words": timing["words"],
                                 "what": "plain volatility targeting against holding the index"}
    return size


def evaluate(frame: Frame, *, symbol: str, kinds: Sequence[str] = MODEL_KINDS,
             first_test_date: Any = None, refit_every: int = 21, cost_bps: float = DEFAULT_COST_BPS,
             max_exposure: float = DEFAULT_MAX_EXPOSURE, progress: Progress | None = None) -> dict[str, Any]:
    """JSON-serialisable report: out-of-sample period, protocol, per-model metrics, baselines,
    volatility forecasts' scores, sized strategies with their bootstrap tests, edge and risk timing.

    `report["edge"][kind]` is True only when the model's sized strategy beat plain volatility
    targeting's after-cost Sharpe on the same out-of-sample days, traded a bar late, with a
    Holm-corrected bootstrap p-value below 0.05.
    """
    report, _ = evaluate_with_frames(frame, symbol=symbol, kinds=kinds, first_test_date=first_test_date,
                                     refit_every=refit_every, cost_bps=cost_bps, max_exposure=max_exposure,
                                     progress=progress)
    return report
