"""Training (retrain function, `stockpred train`): record, fit, export and publish a symbol's model.

A model's out-of-sample record comes from a walk-forward evaluation on that symbol's history
(stockml.evaluation): the sized strategy (volatility targeting scaled by the model's conviction)
against buy and hold, with the Sharpe difference, its 90% interval and a bootstrap p-value; `edge`
is true only when p < 0.05. The model is then fitted on all of it, with the volatility model and
sizing rule the walk-forward would choose today (stored in the metadata for serving), exported to
a numpy artifact (stockml.artifact), published to the registry and recorded in the `models` table. Needs
scikit-learn, so it runs in the retrain function (MlTrainingLayer) and `stockpred train`; the
predict function never imports it, it asks for a training (stockml.signals.request_training).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import sklearn

from stockml import artifact
from stockml.edge import EDGE_P_VALUE
from stockml.evaluation import evaluate_with_frames
from stockml.features import FEATURE_NAMES, frame_from_bars
from stockml.models import make_model, training_rows
from stockml.signals import NotEnoughHistory, check_history, record_model, registry
from stockml.volatility import percent_returns
from stockml.volatility_fit import fit_volatility
from stockpred import config
from stockpred.logs import get_logger

if TYPE_CHECKING:
    from stockpred.prices import Bar

__all__ = ["NotEnoughHistory", "train"]

log = get_logger("training")

def _first_test_date(bars: list[Bar]) -> dt.date:
    check_history(bars)
    return bars[config.load().min_train_days].date


def record_from(report: dict[str, Any], kind: str) -> dict[str, Any]:
    """The out-of-sample record a model carries: direction skill, its sized strategy's Sharpe beside
    buy and hold and plain volatility targeting, the difference, its 90% interval and p-value."""
    model_metrics = report["models"][kind]
    sized = report["sizing"][f"sized_{kind}"]
    test = sized["vs_buy_and_hold"]
    low, high = test["interval_90"]
    p_value = test["p_value"]

    def rounded(value: float | None, digits: int) -> float | None:
        return None if value is None else round(value, digits)

    return {
        "out_of_sample": report["out_of_sample"],
        "accuracy": round(model_metrics["accuracy"], 4),
        "balanced_accuracy": round(model_metrics["balanced_accuracy"], 4),
        "always_up_accuracy": round(report["baselines"]["always_up"]["accuracy"], 4),
        "strategy": "volatility-targeted exposure scaled by the model's conviction",
        "sharpe": round(sized["sharpe"], 3),
        "annual_return": round(sized["annual_return"], 4),
        "mean_exposure": round(sized["exposure"], 3),
        "buy_and_hold_sharpe": round(report["sizing"]["buy_and_hold"]["sharpe"], 3),
        "vol_target_sharpe": round(report["sizing"]["vol_target"]["sharpe"], 3),
        "long_flat_sharpe": round(model_metrics["sharpe"], 3),
        "sharpe_difference": rounded(test["difference"], 3),
        "sharpe_difference_interval_90": [rounded(low, 3), rounded(high, 3)],
        "p_value": rounded(p_value, 4),
        "edge": p_value is not None and p_value < EDGE_P_VALUE,
        "verdict": test["words"],
    }


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
    first_test = _first_test_date(bars)
    frame = frame_from_bars(bars)
    report, _ = evaluate_with_frames(frame, symbol=symbol, kinds=(kind,),
                                     first_test_date=first_test.isoformat(),
                                     refit_every=config.load().record_refit_every,
                                     max_exposure=max_exposure, progress=progress)
    rows = training_rows(frame)
    model = make_model(kind).fit(rows.X, rows.direction, rows.next_return,
                                 trained_through=str(rows.dates[-1]))
    record = record_from(report, kind)
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
    meta = registry().publish(artifact.export(model), metadata)
    record_model(meta)
    log.info("model published", extra={"fields": {"symbol": symbol, "version": meta["version"],
                                                  "edge": record["edge"],
                                                  "seconds": metadata["train_seconds"]}})
    return meta
