"""Training (retrain function, `stockpred train`): record, fit, export and publish a symbol's model.

A model's out-of-sample record comes from a walk-forward evaluation on that symbol's history
(stockml.evaluation), from the first day with MIN_TRAIN_DAYS of history before it: the sized
strategy (volatility targeting scaled by the model's conviction) traded a bar late against plain
volatility targeting, with the Sharpe difference, its 90% interval and a Holm-corrected bootstrap
p-value; `edge` (direction skill) is true only when that p < 0.05 (see `record_from`). The
model is then fitted on all of it, with the volatility model and sizing rule the walk-forward
would choose today (stored in the metadata for serving), exported to a numpy artifact
(stockml.artifact), published to the registry and recorded in the `models` table. Needs
scikit-learn, so it runs in the retrain function (MlTrainingLayer) and `stockpred train`; the
predict function never imports it, it asks for a training (stockml.training_lease.request_training).
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import sklearn

from stockml import artifact, registry, trials
from stockml.evaluation import evaluate_with_frames
from stockml.features import FEATURE_NAMES, frame_from_bars
from stockml.models import make_model, training_rows
from stockml.performance import deflated_sharpe
from stockml.prediction_store import record_model
from stockml.scoring import strategy_returns
from stockml.signals import NotEnoughHistory, check_history
from stockml.volatility import percent_returns
from stockml.volatility_fit import fit_volatility
from stockpred import config
from stockpred.market.bar_checks import complete_bars
from stockpred.observability.logs import get_logger

if TYPE_CHECKING:
    from stockpred.market.prices import Bar

__all__ = ["NotEnoughHistory", "train"]

log = get_logger("training")

def record_from(report: dict[str, Any], kind: str) -> dict[str, Any]:
    """The out-of-sample record a model carries. `edge` is direction skill: the model's sized
    strategy against plain volatility targeting (the same sizing with no direction), traded a bar
    late after costs, with the Holm-corrected p-value (`p_value`) below 0.05; its difference,
    90% interval and verdict sit beside it. `risk_timing` is what plain volatility targeting
    itself did against holding, and `vs_buy_and_hold` the sized strategy against holding."""
    model_metrics = report["models"][kind]
    sized = report["sizing"][f"sized_{kind}"]
    direction = sized["vs_vol_target"]
    protocol = report["protocol"]

    def rounded(value: float | None, digits: int) -> float | None:
        return None if value is None else round(value, digits)

    def summary(test: dict[str, Any]) -> dict[str, Any]:
        low, high = test["interval_90"]
        return {"against": test["against"], "sharpe_difference": rounded(test["difference"], 3),
                "interval_90": [rounded(low, 3), rounded(high, 3)],
                "p_value": rounded(test["p_value_corrected"], 4), "edge": bool(test["edge"]),
                "verdict": test["words"]}

    low, high = direction["interval_90"]
    return {
        "out_of_sample": report["out_of_sample"],
        "accuracy": round(model_metrics["accuracy"], 4),
        "balanced_accuracy": round(model_metrics["balanced_accuracy"], 4),
        "always_up_accuracy": round(report["baselines"]["always_up"]["accuracy"], 4),
        "strategy": "volatility-targeted exposure scaled by the model's conviction",
        "execution": protocol["execution"],
        "cost_bps": protocol["cost_bps"],
        "spread_bps": protocol["spread_bps"],
        "sharpe": round(sized["sharpe"], 3),
        "annual_return": round(sized["annual_return"], 4),
        "mean_exposure": round(sized["exposure"], 3),
        "buy_and_hold_sharpe": round(report["sizing"]["buy_and_hold"]["sharpe"], 3),
        "vol_target_sharpe": round(report["sizing"]["vol_target"]["sharpe"], 3),
        "long_flat_sharpe": round(model_metrics["sharpe"], 3),
        "edge_means": "the model's direction calls add to plain volatility targeting: its sized "
                      "strategy beat the same sizing with no direction, after costs, traded a bar "
                      "later, with a p-value corrected for every test of the evaluation",
        "sharpe_difference": rounded(direction["difference"], 3),
        "sharpe_difference_interval_90": [rounded(low, 3), rounded(high, 3)],
        "p_value": rounded(direction["p_value_corrected"], 4),
        "p_value_uncorrected": rounded(direction["p_value"], 4),
        "tests_in_family": direction["tests_in_family"],
        "edge": bool(report["edge"][kind]),
        "verdict": direction["words"],
        "risk_timing": summary(report["sizing"]["vol_target"]["vs_buy_and_hold"]),
        "vs_buy_and_hold": summary(sized["vs_buy_and_hold"]),
    }


def judged(record: dict[str, Any], symbol: str,
           report: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The record with its edge as judged on the symbol's trial record (stockml.trials): judged
    again only when the record has grown enough, at the level that judgement's number allows;
    and the trial record counting this evaluation (to save once the model is published)."""
    before = registry.stack_registry().trials(symbol) or trials.empty(symbol)
    after, verdict = trials.judge(before, record_end=report["out_of_sample"]["end"],
                                  record_days=report["out_of_sample"]["days"], p_value=record["p_value"],
                                  configurations=report["protocol"]["configurations"])
    when = "now" if verdict["rejudged"] else "earlier"
    judged_p = "" if verdict["p_value"] is None else f" and had p = {verdict['p_value']:.4f}"
    words = (f"{record['verdict']}; edge judged {when} on the record through "
             f"{verdict['judged_through']}: judgement {verdict['number']} of this symbol, which needs "
             f"p < {verdict['alpha']:.4f}{judged_p}")
    return {**record, "edge": bool(verdict["edge"]), "edge_judgement": verdict, "verdict": words}, after


def serving_choices(report: dict[str, Any], kind: str, returns: Any,
                    max_exposure: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """The volatility model (refitted on every return) and sizing rule chosen at the last decision
    of the walk-forward: what the predict function will apply to the next days."""
    last = report["sizing"][f"sized_{kind}"]["choices"]["last"]
    volatility = fit_volatility(last["volatility"], returns).to_dict()
    sizing = {"target_multiple": last["target_multiple"], "horizon": last["horizon"],
              "conviction_strength": last["conviction_strength"], "max_exposure": max_exposure}
    return volatility, sizing


def train(symbol: str, bars: list[Bar], kind: str | None = None, source: str = "",
          progress: Callable[[int, int], None] | None = None,
          max_exposure: float | None = None) -> dict[str, Any]:
    """Evaluates walk-forward for the record, fits on all history, publishes; returns metadata.
    `max_exposure` caps the sizing's recommendation (default: the MAX_EXPOSURE setting)."""
    kind = kind or config.load().model_kind
    max_exposure = config.load().max_exposure if max_exposure is None else max_exposure
    started = time.perf_counter()
    bars = complete_bars(bars)  # a partial last bar must not label the day before it
    check_history(bars)
    frame = frame_from_bars(bars)
    report, series = evaluate_with_frames(frame, symbol=symbol, kinds=(kind,),
                                     min_train_days=config.load().min_train_days,
                                     refit_every=config.load().record_refit_every,
                                     max_exposure=max_exposure, progress=progress)
    rows = training_rows(frame)
    model = make_model(kind).fit(rows.X, rows.direction, rows.next_return,
                                 trained_through=str(rows.dates[-1]))
    record, trial_record = judged(record_from(report, kind), symbol, report)
    sized_net = strategy_returns(series.positions[f"sized_{kind}"], series.realised,
                                 report["protocol"]["trade_cost_bps"])
    deflated = deflated_sharpe(sized_net, trials=trial_record["configurations"])
    value = deflated["deflated_sharpe"]
    record["deflated_sharpe"] = {
        "value": round(value, 4) if math.isfinite(value) else None,
        "trials": deflated["trials"],
        "expected_max_sharpe": round(deflated["expected_max_sharpe"], 3),
        "means": "the chance the sized strategy's true Sharpe beats the best of this many no-skill "
                 "trials: every configuration evaluated for this symbol, across retrains",
    }
    volatility, sizing = serving_choices(report, kind, percent_returns(frame.close), max_exposure)
    metadata = {
        "symbol": symbol,
        "kind": kind,
        "trained_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "training_window": {"from": str(rows.dates[0]), "to": str(rows.dates[-1]),
                            "rows": len(rows.dates)},
        "data_source": source,
        "features": list(FEATURE_NAMES),
        "params": model.params,
        "metrics": report["models"][kind],
        "baselines": report["baselines"],
        "volatility_scores": report["volatility"],
        "sizing_metrics": {name: {k: v for k, v in m.items() if k != "choices"}
                           for name, m in report["sizing"].items()},
        "volatility": volatility,
        "sizing": sizing,
        "record": record,
        "sklearn_version": sklearn.__version__,
        "train_seconds": round(time.perf_counter() - started, 2),
    }
    meta = registry.stack_registry().publish(artifact.export(model), metadata)
    registry.stack_registry().save_trials(symbol, trial_record)
    record_model(meta)
    log.info("model published", extra={"fields": {"symbol": symbol, "version": meta["version"],
                                                  "edge": record["edge"],
                                                  "seconds": metadata["train_seconds"]}})
    return meta
